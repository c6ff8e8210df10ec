"""Training fresh models on distilled sets and measuring them (SPEC section 3)."""
