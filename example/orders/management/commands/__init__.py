"""``manage.py create_staff_user``: see its module."""
