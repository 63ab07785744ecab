//! Hand-written to the common subset of both backends (see migrations/).

diesel::table! {
    organizations (id) {
        id -> BigInt,
        slug -> Text,
        name -> Text,
        disabled_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        email_verified_at -> Nullable<Timestamp>,
        is_platform_admin -> Bool,
        disabled_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    memberships (id) {
        id -> BigInt,
        organization_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));

diesel::table! {
    jobs (id) {
        id -> BigInt,
        kind -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        run_at -> Timestamp,
        locked_by -> Nullable<Text>,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (key_hash) {
        key_hash -> Text,
        user_id -> Nullable<BigInt>,
        state -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    user_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        token_hash -> Text,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    invitations (id) {
        id -> BigInt,
        organization_id -> BigInt,
        email -> Text,
        role -> Text,
        token_hash -> Text,
        invited_by -> Nullable<BigInt>,
        expires_at -> Timestamp,
        accepted_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        scopes -> Text,
        created_by -> Nullable<BigInt>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        organization_id -> Nullable<BigInt>,
        actor_user_id -> Nullable<BigInt>,
        actor_label -> Text,
        action -> Text,
        target -> Nullable<Text>,
        detail -> Nullable<Text>,
        ip -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    login_failures (id) {
        id -> BigInt,
        email -> Text,
        ip -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    agents (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
        slug -> Text,
        greeting -> Text,
        instructions -> Text,
        provider -> Nullable<Text>,
        model -> Nullable<Text>,
        temperature -> Double,
        handoff_threshold -> Double,
        allowed_origins -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    knowledge_documents (id) {
        id -> BigInt,
        organization_id -> BigInt,
        agent_id -> BigInt,
        title -> Text,
        format -> Text,
        size_bytes -> Integer,
        content -> Text,
        status -> Text,
        chunk_count -> Integer,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// PostgreSQL also has a generated `search` tsvector, used only in raw SQL.
    knowledge_chunks (id) {
        id -> BigInt,
        organization_id -> BigInt,
        agent_id -> BigInt,
        document_id -> BigInt,
        ordinal -> Integer,
        heading -> Nullable<Text>,
        content -> Text,
    }
}

diesel::table! {
    conversations (id) {
        id -> BigInt,
        organization_id -> BigInt,
        agent_id -> BigInt,
        channel -> Text,
        visitor_id -> Text,
        visitor_ip -> Text,
        token_hash -> Text,
        status -> Text,
        summary -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        organization_id -> BigInt,
        conversation_id -> BigInt,
        role -> Text,
        content -> Text,
        provider -> Nullable<Text>,
        latency_ms -> Nullable<Integer>,
        tokens_in -> Nullable<Integer>,
        tokens_out -> Nullable<Integer>,
        citations -> Text,
        handoff_offered -> Bool,
        created_at -> Timestamp,
        visitor_id -> Nullable<Text>,
        visitor_ip -> Nullable<Text>,
    }
}

diesel::table! {
    tickets (id) {
        id -> BigInt,
        organization_id -> BigInt,
        conversation_id -> BigInt,
        subject -> Text,
        status -> Text,
        assignee_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        solved_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    ticket_events (id) {
        id -> BigInt,
        organization_id -> BigInt,
        ticket_id -> BigInt,
        actor_id -> Nullable<BigInt>,
        actor_label -> Text,
        kind -> Text,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    provider_credentials (id) {
        id -> BigInt,
        organization_id -> BigInt,
        provider -> Text,
        base_url -> Nullable<Text>,
        sealed_key -> Text,
        key_hint -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    billing_accounts (organization_id) {
        organization_id -> BigInt,
        stripe_customer_id -> Nullable<Text>,
        stripe_subscription_id -> Nullable<Text>,
        plan -> Text,
        status -> Text,
        price_id -> Nullable<Text>,
        current_period_start -> Nullable<Timestamp>,
        current_period_end -> Nullable<Timestamp>,
        cancel_at_period_end -> Bool,
        trial_end -> Nullable<Timestamp>,
        past_due_since -> Nullable<Timestamp>,
        stripe_state_at -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Text,
        event_type -> Text,
        api_version -> Nullable<Text>,
        livemode -> Bool,
        stripe_created -> BigInt,
        payload -> Text,
        state -> Text,
        organization_id -> Nullable<BigInt>,
        detail -> Nullable<Text>,
        received_at -> Timestamp,
        processed_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    invoices (id) {
        id -> BigInt,
        organization_id -> BigInt,
        stripe_invoice_id -> Text,
        number -> Nullable<Text>,
        status -> Text,
        currency -> Text,
        amount_due -> BigInt,
        amount_paid -> BigInt,
        hosted_invoice_url -> Nullable<Text>,
        stripe_created -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    usage_counters (organization_id, period) {
        organization_id -> BigInt,
        period -> Text,
        messages -> BigInt,
    }
}

diesel::table! {
    organization_former_slugs (slug) {
        slug -> Text,
        organization_id -> BigInt,
        retired_at -> Timestamp,
    }
}

diesel::table! {
    agent_former_slugs (organization_id, slug) {
        organization_id -> BigInt,
        slug -> Text,
        agent_id -> BigInt,
        retired_at -> Timestamp,
    }
}

diesel::joinable!(knowledge_documents -> agents (agent_id));
diesel::joinable!(conversations -> agents (agent_id));
diesel::joinable!(knowledge_chunks -> knowledge_documents (document_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(tickets -> conversations (conversation_id));
diesel::joinable!(ticket_events -> tickets (ticket_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::joinable!(api_keys -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    users,
    memberships,
    jobs,
    sessions,
    user_tokens,
    invitations,
    api_keys,
    audit_log,
    login_failures,
    agents,
    knowledge_documents,
    knowledge_chunks,
    conversations,
    messages,
    tickets,
    ticket_events,
    provider_credentials,
    billing_accounts,
    stripe_events,
    invoices,
    usage_counters,
    organization_former_slugs,
    agent_former_slugs,
);
