"""A small shop app: orders, and the tasks that confirm, charge and ship them."""
