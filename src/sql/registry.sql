-------------------------------------------------------------------------------
-- registry.sql: the operations of this release.  Fresh install and update
-- alike: a kind a previous release registered gets its current functions.
-------------------------------------------------------------------------------
INSERT INTO customer_unify.operation (kind, validate, steps, copy_plan, verify, dependents, describe, security)
VALUES ('split',
        'customer_unify._split_validate(text, jsonb)',
        'customer_unify._split_steps(customer_unify.migration)',
        'customer_unify._split_copy_plan(customer_unify.migration)',
        'customer_unify._split_verify(customer_unify.migration, boolean)',
        'customer_unify._split_dependents(customer_unify.migration)',
        'customer_unify._split_describe(customer_unify.migration)',
        'customer_unify._split_security_steps(customer_unify.migration)'),
       ('merge',
        'customer_unify._merge_validate(text, jsonb)',
        'customer_unify._merge_steps(customer_unify.migration)',
        'customer_unify._merge_copy_plan(customer_unify.migration)',
        'customer_unify._merge_verify(customer_unify.migration, boolean)',
        'customer_unify._merge_dependents(customer_unify.migration)',
        'customer_unify._merge_describe(customer_unify.migration)',
        'customer_unify._merge_security_steps(customer_unify.migration)'),
       ('updated_at',
        'customer_unify._kit_updated_at_validate(text, jsonb)',
        'customer_unify._kit_updated_at_steps(customer_unify.migration)',
        'customer_unify._kit_updated_at_copy_plan(customer_unify.migration)',
        'customer_unify._kit_updated_at_verify(customer_unify.migration, boolean)',
        'customer_unify._kit_updated_at_dependents(customer_unify.migration)',
        'customer_unify._kit_updated_at_describe(customer_unify.migration)',
        'customer_unify._kit_updated_at_security_steps(customer_unify.migration)')
ON CONFLICT (kind) DO UPDATE SET validate = EXCLUDED.validate, steps = EXCLUDED.steps,
    copy_plan = EXCLUDED.copy_plan, verify = EXCLUDED.verify, dependents = EXCLUDED.dependents,
    describe = EXCLUDED.describe, security = EXCLUDED.security;
