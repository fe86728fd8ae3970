"""Kopf registrations. Importing `conveyor.handlers.registration` registers them."""
