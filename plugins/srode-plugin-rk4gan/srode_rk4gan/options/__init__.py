"""Option files of the rk4gan family (listed by `basicsr options list`)."""
