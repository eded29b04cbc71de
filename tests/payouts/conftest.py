from tests.fakes.fixtures import razorpay_fake, stripe_fake  # noqa: F401 - shared fixtures
