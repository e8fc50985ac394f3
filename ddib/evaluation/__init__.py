"""Measuring translations: the digit classifier, quality metrics, `ddib evaluate`."""
