"""What server and client must agree on: config models, encoder, pretext tasks, AdaDN, wire schema."""
