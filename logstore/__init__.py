"""The prediction log: tables, migrations, the spool and its writer, records, entities and outcomes."""
