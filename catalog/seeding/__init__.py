"""Demo data for ``manage.py seed_demo``: what it looks like (``demo``) and the
fast way to write a lot of it with its events (``bulk``)."""
