"""What generative models do with their training data, measured (Chapter 10): near-copies among
samples (``coursekit.copies``), membership inference (``membership``) and a green-list
watermark for generated text (``watermark``)."""
