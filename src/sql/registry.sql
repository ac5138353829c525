-------------------------------------------------------------------------------
-- registry.sql: the operations of this release (once per release script).
-------------------------------------------------------------------------------
INSERT INTO customer_unify.operation (kind, validate, steps, copy_plan, verify, dependents, describe, security)
VALUES ('split',
        'customer_unify._split_validate(text, jsonb)',
        'customer_unify._split_steps(customer_unify.migration)',
        'customer_unify._split_copy_plan(customer_unify.migration)',
        'customer_unify._split_verify(customer_unify.migration, boolean)',
        'customer_unify._split_dependents(customer_unify.migration)',
        'customer_unify._split_describe(customer_unify.migration)',
        'customer_unify._split_security_steps(customer_unify.migration)');
