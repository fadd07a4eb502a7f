"""One module per forkaudit verb."""
