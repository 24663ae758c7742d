"""Training recipes (classifier first); the CLI's ``train`` verbs call these."""
