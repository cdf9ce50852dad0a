"""Test helpers at Captum 0.9's ``captum.testing`` path.

Captum's own test suite imports these (``from captum.testing.helpers import BaseTest``);
with the package renamed, the same imports resolve here. They are for tests only: no
part of whybox imports them.
"""
