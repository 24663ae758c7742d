"""Reports and figures (matplotlib and scikit-learn come with the ``plots`` extra)."""
