# config tests: the key table, YAML job files, key=value overrides, their errors, and the
# serialize -> parse round trip (io/config.c, io/config_keys.c).
ssl_unit_test(NAME test_config SOURCES test_config.c LIBS ssl_app LABELS config)
