"""Attribution test helpers at Captum 0.9's ``captum.testing.attr`` path."""
