"""Option files shipped with srode-plugin-resshift (listed by `basicsr options list`)."""
