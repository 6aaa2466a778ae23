"""Users: the custom user model with its cash balance, registration and tokens."""
