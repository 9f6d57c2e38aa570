"""Option files of the Neural-ODE family (listed by `basicsr options list`)."""
