//! Diesel table definitions, the same for PostgreSQL and SQLite (times are Unix milliseconds).

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        owner -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        rpm -> Nullable<BigInt>,
        tpm -> Nullable<BigInt>,
        token_budget -> Nullable<BigInt>,
        allowed_models -> Nullable<Text>,
        max_concurrency -> Nullable<BigInt>,
    }
}

diesel::table! {
    usage_events (id) {
        id -> BigInt,
        event_id -> Text,
        request_id -> Text,
        key_id -> Nullable<BigInt>,
        model -> Text,
        service -> Text,
        endpoint -> Text,
        api -> Text,
        prompt_tokens -> BigInt,
        completion_tokens -> BigInt,
        estimated -> Bool,
        cached -> Bool,
        status -> Integer,
        latency_ms -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(usage_events -> api_keys (key_id));

diesel::table! {
    usage_dead_letters (id) {
        id -> BigInt,
        event_id -> Text,
        event -> Text,
        error -> Text,
        created_at -> BigInt,
    }
}
diesel::allow_tables_to_appear_in_same_query!(api_keys, usage_events, users, usage_dead_letters);
