"""Local fakes of the providers' HTTP APIs, served on loopback ports for the official SDKs.

from tests.fakes.razorpay_api import running_razorpay_fake   # context manager
from tests.fakes.stripe_api import running_stripe_fake       # context manager
from tests.fakes.fixtures import razorpay_fake, stripe_fake  # pytest fixtures, re-export
                                                             # them from a conftest.py
"""
