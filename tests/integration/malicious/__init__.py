"""A malicious site in real Flower simulations: test-only app copy, attacks and the campaign."""
