"""Training fresh models on distilled sets and measuring them (docs/method.md section 3)."""
