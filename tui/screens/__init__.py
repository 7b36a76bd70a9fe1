"""Screens of the app: the main screen and the modal screens pushed over it."""
