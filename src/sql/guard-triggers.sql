-------------------------------------------------------------------------------
-- guard-triggers.sql: the event triggers of the DDL guard (guard.sql), made
-- last, once the catalog is complete.
-------------------------------------------------------------------------------
CREATE EVENT TRIGGER customer_unify_guard_ddl ON ddl_command_end
    EXECUTE FUNCTION customer_unify._guard_ddl();
CREATE EVENT TRIGGER customer_unify_guard_drop ON sql_drop
    EXECUTE FUNCTION customer_unify._guard_drop();

