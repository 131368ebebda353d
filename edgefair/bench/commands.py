"""Commands registered on the bench CLI from their own modules."""
