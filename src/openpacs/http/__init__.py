"""What the HTTP doors share: authentication, error answers, the services they call."""
