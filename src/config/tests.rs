//! Configuration layering, environment names, and errors that name their path.

use std::path::Path;
use std::time::Duration;

use actors::BalanceStrategy;

use super::env::environment_layer;
use super::*;

fn load(files: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let source = ConfigSource {
        dir: dir.path().to_path_buf(),
        env: "development".into(),
    };
    let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let raw = load_raw(&source, environment_layer(vars))?;
    validate(raw, &source.env)
}

fn check_error(files: &[(&str, &str)], env: &[(&str, &str)], fragments: &[&str]) {
    let error = load(files, env)
        .expect_err("should be rejected")
        .to_string();
    for fragment in fragments {
        assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
    }
}

#[test]
fn defaults_alone_are_valid() {
    let config = load(&[], &[]).expect("valid");
    assert_eq!(config.server.bind, "0.0.0.0:8080");
    assert_eq!(config.server.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(config.registry.defaults.strategy, BalanceStrategy::P2cEwma);
    assert!(config.tls.is_none());
    assert!(config.gzip && config.metrics);
    assert!(config.discovery.is_some());
}

#[test]
fn layers_apply_in_order() {
    let files = [
        (
            "default.toml",
            "[server]\nbind = \"127.0.0.1:1\"\nworkers = 3\n",
        ),
        ("development.toml", "[server]\nbind = \"127.0.0.1:2\"\n"),
        ("production.toml", "[server]\nbind = \"127.0.0.1:9\"\n"),
    ];
    let config = load(&files, &[]).expect("valid");
    assert_eq!(
        (config.server.bind.as_str(), config.server.workers),
        ("127.0.0.1:2", 3)
    );
    let config = load(&files, &[("GATEWAY_BIND", "127.0.0.1:3")]).expect("valid");
    assert_eq!(config.server.bind, "127.0.0.1:3");
}

#[test]
fn operator_environment_names_work() {
    let env = [
        ("SERVICE_DISCOVERY_ENABLED", "true"),
        ("SERVICE_DISCOVERY_TYPE", "static"),
        ("SERVICE_DISCOVERY_STATIC_FILE", "/etc/gw/services.json"),
        ("PROTOCOL_CONVERSION_ENABLED", "false"),
        ("MONITORING_ENABLED", "true"),
        ("PROMETHEUS_ENABLED", "false"),
        ("GZIP_ENABLED", "false"),
        ("CORS_ENABLED", "true"),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        ),
        ("LOG_FORMAT", "json"),
        ("GATEWAY__UPSTREAM_DEFAULTS__STRATEGY", "round_robin"),
        ("GATEWAY__SERVICES__OPENAI__API_KEY", "sk-secret"),
        ("UNRELATED_VARIABLE", "ignored"),
    ];
    let config = load(&[], &env).expect("valid");
    let discovery = config.discovery.as_ref().expect("discovery on");
    assert_eq!(discovery.static_file, Path::new("/etc/gw/services.json"));
    assert!(!config.protocol_conversion && !config.metrics && !config.gzip);
    assert_eq!(
        config.cors_allowed_origins.as_deref(),
        Some(
            &[
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ][..]
        )
    );
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(
        config.registry.defaults.strategy,
        BalanceStrategy::RoundRobin
    );
    let openai = &config.registry.services["openai"];
    assert_eq!(openai.api_key.as_deref(), Some("sk-secret"));
    assert_eq!(
        openai.strategy,
        BalanceStrategy::RoundRobin,
        "services inherit the defaults"
    );

    let config = load(
        &[],
        &[
            ("SERVICE_DISCOVERY_ENABLED", "false"),
            ("CORS_ENABLED", "false"),
        ],
    )
    .expect("valid");
    assert!(config.discovery.is_none() && config.cors_allowed_origins.is_none());
}

#[test]
fn unknown_keys_name_their_path_and_origin() {
    check_error(
        &[("default.toml", "[server]\ncolour = \"red\"\n")],
        &[],
        &["server.colour", "default.toml"],
    );
    check_error(
        &[("development.toml", "[sever]\nbind = \"x\"\n")],
        &[],
        &["sever"],
    );
    check_error(
        &[],
        &[("GATEWAY__SERVER__COLOUR", "red")],
        &["server.colour", "GATEWAY__SERVER__COLOUR"],
    );
}

#[test]
fn bad_values_are_reported_together() {
    check_error(
        &[(
            "development.toml",
            "[upstream_defaults]\nmax_attempts = 0\nconnect_timeout_ms = 0\n[services.llm]\nhealth_check_path = \"health\"\n",
        )],
        &[],
        &[
            "upstream_defaults.max_attempts: must be at least 1",
            "upstream_defaults.connect_timeout_ms: must be positive",
            "services.llm.health_check_path: must start with '/'",
        ],
    );
    check_error(
        &[(
            "default.toml",
            "[upstream_defaults]\nstrategy = \"fastest\"\n",
        )],
        &[],
        &["upstream_defaults.strategy", "fastest"],
    );
    check_error(
        &[],
        &[("GATEWAY_WORKERS", "many")],
        &["server.workers", "GATEWAY_WORKERS"],
    );
    check_error(
        &[],
        &[("TLS_ENABLED", "true")],
        &["tls: cert_file and key_file are required"],
    );
    check_error(
        &[],
        &[
            ("TLS_ENABLED", "true"),
            ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
            ("TLS_KEY_FILE", "/nonexistent/key.pem"),
        ],
        &["tls.cert_file", "does not exist"],
    );
    check_error(
        &[("default.toml", "[[models]]\nname = \"a\"\nservice = \"s\"\nupstream_model = \"m\"\n[[models]]\nname = \"a\"\nservice = \"t\"\nupstream_model = \"m\"\n")],
        &[],
        &["models[1].name", "defined twice"],
    );
}

#[test]
fn consul_and_kubernetes_read_their_environment_names() {
    let config = load(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "consul"),
            ("CONSUL_ADDR", "consul:8500"),
            ("CONSUL_TOKEN", "12345"),
            ("CONSUL_DATACENTER", "dc2"),
            ("CONSUL_REGISTER", "true"),
            ("DISCOVERY_REQUIRED", "false"),
        ],
    )
    .expect("valid");
    let discovery = config.discovery.as_ref().expect("discovery");
    assert!(!discovery.required);
    let DiscoveryBackend::Consul(consul) = &discovery.backend else {
        panic!("consul expected, got {:?}", discovery.backend);
    };
    assert_eq!(consul.base_url, "http://consul:8500");
    // A numeric-looking token stays the string it was.
    assert_eq!(consul.token.as_deref(), Some("12345"));
    assert_eq!(consul.datacenter.as_deref(), Some("dc2"));
    assert_eq!(consul.selection, ConsulSelection::Tag("ai-model".into()));
    assert_eq!(consul.register, Some(("ai-gateway".into(), None)));
    assert!(!format!("{consul:?}").contains("12345"));
    let printed = config.render_masked();
    assert!(
        !printed.contains("12345") && printed.contains("token = \"********\""),
        "{printed}"
    );

    let config = load(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "consul"),
            ("CONSUL_SERVICES", "llm, embed"),
        ],
    )
    .expect("valid");
    let Some(DiscoveryBackend::Consul(consul)) = config.discovery.map(|d| d.backend) else {
        panic!("consul expected");
    };
    assert_eq!(
        consul.selection,
        ConsulSelection::Services(vec!["llm".into(), "embed".into()])
    );
    assert!(consul.register.is_none());

    let config = load(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "kubernetes"),
            ("K8S_NAMESPACE", "ai-gateway"),
        ],
    )
    .expect("valid");
    let discovery = config.discovery.expect("discovery");
    assert!(discovery.required, "DISCOVERY_REQUIRED defaults to true");
    let DiscoveryBackend::Kubernetes(kubernetes) = discovery.backend else {
        panic!("kubernetes expected");
    };
    assert_eq!(kubernetes.namespace, "ai-gateway");
    assert_eq!(kubernetes.label_selector, "aigateway.io/upstream=true");
    let config = load(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "kubernetes"),
            ("K8S_SERVICES", "llm,embed"),
        ],
    )
    .expect("valid");
    let Some(DiscoveryBackend::Kubernetes(kubernetes)) = config.discovery.map(|d| d.backend) else {
        panic!("kubernetes expected");
    };
    assert_eq!(
        kubernetes.label_selector,
        "kubernetes.io/service-name in (llm,embed)"
    );
}

#[test]
fn bad_discovery_settings_are_refused_clearly() {
    check_error(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "consul"),
            ("CONSUL_ADDR", "https://consul:8501"),
        ],
        &["discovery.consul.addr (CONSUL_ADDR)", "https"],
    );
    check_error(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "consul"),
            ("CONSUL_ADDR", "consul 8500"),
        ],
        &["not host:port"],
    );
    check_error(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "kubernetes"),
            ("K8S_NAMESPACE", "Not_A_Namespace"),
        ],
        &["discovery.kubernetes.namespace (K8S_NAMESPACE)"],
    );
    check_error(
        &[],
        &[
            ("SERVICE_DISCOVERY_TYPE", "kubernetes"),
            ("K8S_API_URL", "localhost:6443"),
        ],
        &["K8S_API_URL", "http://"],
    );
    check_error(
        &[],
        &[("DISCOVERY_REQUIRED", "maybe")],
        &["discovery.required"],
    );
    check_error(
        &[],
        &[("SERVICE_DISCOVERY_TYPE", "zookeeper")],
        &["discovery.type", "zookeeper"],
    );
}

#[test]
fn secrets_are_masked_when_printed() {
    let config = load(
        &[(
            "default.toml",
            "[services.openai]\napi_key = \"sk-live-123\"\n",
        )],
        &[("GATEWAY__UPSTREAM_DEFAULTS__API_KEY", "sk-default-456")],
    )
    .expect("valid");
    let printed = config.render_masked();
    assert!(
        !printed.contains("sk-live-123") && !printed.contains("sk-default-456"),
        "{printed}"
    );
    assert!(printed.contains("api_key = \"********\""), "{printed}");
    assert!(printed.contains("[services.openai]"));
}

#[test]
fn production_refuses_weak_jwt_secrets() {
    let check = |secret: Option<&str>| {
        let mut raw = RawConfig::default();
        raw.auth.jwt_secret = secret.map(String::from);
        validate(raw, "production")
    };
    for (secret, reason) in [
        (None, "required in production"),
        (Some("short"), "shorter than 32 bytes"),
        (
            Some("change-me-change-me-change-me-change-me"),
            "placeholder",
        ),
        (
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            "distinct characters",
        ),
    ] {
        let error = check(secret).expect_err("refused").to_string();
        assert!(
            error.contains("JWT_SECRET") && error.contains(reason),
            "{secret:?}: {error}"
        );
    }
    let strong = "q8Zr3vNw1XkT5pYb7LmC2sHd9FgJ4uEa6RiO0tWy";
    let config = check(Some(strong)).expect("a strong secret is fine");
    assert_eq!(config.auth.jwt_secret, strong);
    // Outside production a missing secret becomes a random one, with a warning at start-up.
    let mut raw = RawConfig::default();
    raw.auth.jwt_secret = None;
    let development = validate(raw, "development").expect("valid");
    assert!(development.auth.jwt_secret_generated && development.auth.jwt_secret.len() >= 32);
}

#[test]
fn database_urls_and_durations_are_checked() {
    check_error(
        &[],
        &[("DATABASE_URL", "mysql://x/y")],
        &["database.url", "postgres://"],
    );
    check_error(&[], &[("JWT_EXPIRY", "forever")], &["auth.jwt_expiry"]);
    let config = load(
        &[],
        &[
            ("JWT_EXPIRY", "30m"),
            ("DATABASE_URL", "postgres://u:pw@db/gw"),
        ],
    )
    .expect("valid");
    assert_eq!(config.auth.jwt_expiry, std::time::Duration::from_secs(1800));
    let printed = config.render_masked();
    assert!(
        !printed.contains("pw@") && printed.contains("postgres://****@db/gw"),
        "{printed}"
    );
    // Secrets stay strings even when they look like numbers.
    let config = load(
        &[],
        &[("JWT_SECRET", "12345678901234567890123456789012345")],
    )
    .expect("valid");
    assert_eq!(
        config.auth.jwt_secret,
        "12345678901234567890123456789012345"
    );
}

#[test]
fn websocket_and_graphql_limits() {
    let config = load(&[], &[]).expect("valid");
    assert_eq!(config.websocket.max_message_bytes, 1024 * 1024);
    assert_eq!(config.websocket.max_concurrent_requests, 8);
    assert!(config.graphql.enabled && config.graphql.playground);
    // Introspection is on in development unless switched off...
    assert!(config.graphql.introspection);
    let config = load(
        &[(
            "default.toml",
            "[websocket]\nping_interval_ms = 100\nidle_timeout_ms = 300\n[graphql]\nmax_depth = 5\n",
        )],
        &[
            ("GRAPHQL_INTROSPECTION", "false"),
            ("WS_MAX_CONCURRENT_REQUESTS", "2"),
        ],
    )
    .expect("valid");
    assert!(!config.graphql.introspection);
    assert_eq!(config.graphql.max_depth, 5);
    assert_eq!(config.websocket.max_concurrent_requests, 2);
    assert_eq!(
        config.websocket.idle_timeout,
        std::time::Duration::from_millis(300)
    );
    // ...and off in production unless switched on.
    let mut raw = RawConfig::default();
    raw.auth.jwt_secret = Some("Zq8!rT2#vL9@pX4$mN7%bK1^cH6&jF3*wD5".into());
    assert!(
        !validate(raw.clone(), "production")
            .expect("valid")
            .graphql
            .introspection
    );
    raw.graphql.introspection = Some(true);
    assert!(
        validate(raw, "production")
            .expect("valid")
            .graphql
            .introspection
    );
    check_error(
        &[],
        &[
            ("WS_PING_INTERVAL_MS", "60000"),
            ("WS_IDLE_TIMEOUT_MS", "1000"),
        ],
        &["websocket.ping_interval_ms"],
    );
    check_error(
        &[(
            "default.toml",
            "[websocket]\noutbound_queue = 0\nticket_ttl_secs = 3600\n[graphql]\nmax_depth = 1\n",
        )],
        &[],
        &[
            "websocket.outbound_queue",
            "websocket.ticket_ttl_secs",
            "graphql: max_depth",
        ],
    );
    check_error(
        &[("default.toml", "[websocket]\nmax_frames = 1\n")],
        &[],
        &["websocket.max_frames"],
    );
}

#[test]
fn rate_limit_and_redis_variables_apply() {
    let config = load(&[], &[]).expect("valid");
    let limits = &config.rate_limit;
    assert!(!limits.enabled && limits.redis.is_none());
    assert_eq!((limits.requests_per_minute, limits.burst), (60, 10));
    let config = load(
        &[],
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "120"),
            ("RATE_LIMIT_BURST", "4"),
            ("RATE_LIMIT_TOKENS_PER_MINUTE", "5000"),
            ("RATE_LIMIT_REDIS_FAILURE", "deny"),
            ("REDIS_ENABLED", "true"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
            ("REDIS_KEY_PREFIX", "edge1"),
            ("REDIS_TIMEOUT_MS", "20"),
            ("REDIS_BUDGET_LEASE_MS", "5000"),
            ("REDIS_BUDGET_RECONCILE_MS", "250"),
        ],
    )
    .expect("valid");
    let limits = &config.rate_limit;
    assert!(limits.enabled);
    assert_eq!(
        (
            limits.requests_per_minute,
            limits.burst,
            limits.tokens_per_minute
        ),
        (120, 4, Some(5000))
    );
    let redis = limits.redis.as_ref().expect("redis");
    assert_eq!(redis.failure, actors::limits::RedisFailureMode::Deny);
    assert_eq!(
        (redis.prefix.as_str(), redis.timeout),
        ("edge1", Duration::from_millis(20))
    );
    assert_eq!(
        (redis.budget_lease, redis.budget_reconcile),
        (Duration::from_secs(5), Duration::from_millis(250))
    );
    assert!(!config.render_masked().contains("hunter2"));
}

#[test]
fn bad_rate_limit_settings_are_reported() {
    check_error(
        &[],
        &[
            ("RATE_LIMIT_BURST", "0"),
            ("RATE_LIMIT_TOKENS_PER_MINUTE", "0"),
            ("REDIS_ENABLED", "true"),
        ],
        &[
            "rate_limit.burst",
            "rate_limit.tokens_per_minute",
            "REDIS_URL",
        ],
    );
    check_error(
        &[],
        &[("REDIS_ENABLED", "true"), ("REDIS_URL", "rediss://x:6380")],
        &["redis://"],
    );
    check_error(
        &[],
        &[("RATE_LIMIT_REDIS_FAILURE", "panic")],
        &["redis_failure"],
    );
    check_error(
        &[],
        &[
            ("REDIS_BUDGET_LEASE_MS", "0"),
            ("REDIS_BUDGET_RECONCILE_MS", "0"),
        ],
        &["redis.budget_lease_ms", "redis.budget_reconcile_ms"],
    );
}

#[test]
fn cache_variables_apply() {
    assert!(load(&[], &[]).expect("valid").cache.is_none());
    let config = load(
        &[("default.toml", "[services.shared]\ncache_shared = true\n")],
        &[
            ("CACHE_ENABLED", "true"),
            ("CACHE_TTL_SECS", "7"),
            ("CACHE_MAX_BYTES", "1000"),
        ],
    )
    .expect("valid");
    let cache = config.cache.expect("cache on");
    assert_eq!((cache.ttl, cache.max_bytes), (Duration::from_secs(7), 1000));
    assert!(config.registry.services["shared"].cache_shared);
    assert!(!config.registry.defaults.cache_shared);
    check_error(&[], &[("CACHE_TTL_SECS", "0")], &["cache: ttl_secs"]);
}

#[test]
fn metrics_listener_and_trusted_proxies_come_from_the_environment() {
    let config = load(&[], &[]).expect("valid");
    assert_eq!(config.metrics_bind, "0.0.0.0:9091");
    assert!(config.trusted_proxies.is_empty());
    let config = load(
        &[],
        &[
            ("METRICS_BIND", "127.0.0.1:9999"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7"),
        ],
    )
    .expect("valid");
    assert_eq!(config.metrics_bind, "127.0.0.1:9999");
    let expected = gateway_trusted(&["10.0.0.0/8", "192.0.2.7"]);
    assert_eq!(config.trusted_proxies, expected);
    check_error(
        &[],
        &[("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")],
        &["server.trusted_proxies", "proxy.local"],
    );
    check_error(
        &[],
        &[("METRICS_BIND", "9091")],
        &["monitoring.metrics_bind"],
    );
}

fn gateway_trusted(entries: &[&str]) -> crate::client_ip::TrustedProxies {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    crate::client_ip::TrustedProxies::parse(&entries).expect("valid")
}

/// A default `api_key` reaches the services the configuration names, never the defaults a
/// service known only to discovery gets.
#[test]
fn a_default_api_key_stays_with_named_services() {
    let config = load(
        &[(
            "default.toml",
            "[services.openai]\nstrategy = \"round_robin\"\n",
        )],
        &[("GATEWAY__UPSTREAM_DEFAULTS__API_KEY", "sk-default-456")],
    )
    .expect("valid");
    assert_eq!(
        config.registry.services["openai"].api_key.as_deref(),
        Some("sk-default-456")
    );
    assert_eq!(config.registry.defaults.api_key, None);
}

#[test]
fn the_user_cache_ttl_is_configurable_and_bounded() {
    let config = load(&[], &[]).expect("valid");
    assert_eq!(config.auth.user_cache_ttl, Duration::from_secs(5));
    assert_eq!(config.auth.jwt_expiry, Duration::from_secs(86_400));
    let env = [("AUTH_USER_CACHE_TTL_SECS", "2"), ("JWT_EXPIRY", "30m")];
    let config = load(&[], &env).expect("valid");
    assert_eq!(config.auth.user_cache_ttl, Duration::from_secs(2));
    assert_eq!(config.auth.jwt_expiry, Duration::from_secs(1800));
    check_error(
        &[("default.toml", "[auth]\nuser_cache_ttl_secs = 3600\n")],
        &[],
        &["auth.user_cache_ttl_secs"],
    );
}

#[test]
fn the_front_doors_throttles_are_configurable_and_bounded() {
    let config = load(&[], &[]).expect("valid");
    assert_eq!(config.auth.max_failures_per_minute, 20);
    assert_eq!(config.auth.login_max_concurrent, 4);
    assert_eq!(config.auth.login_wait, Duration::from_secs(1));
    assert_eq!(config.server.request_body_timeout, Duration::from_secs(30));
    let env = [
        ("AUTH_MAX_FAILURES_PER_MINUTE", "0"),
        ("AUTH_LOGIN_MAX_CONCURRENT", "2"),
        ("AUTH_LOGIN_WAIT_MS", "250"),
        ("REQUEST_BODY_TIMEOUT_SECS", "9"),
    ];
    let config = load(&[], &env).expect("valid");
    assert_eq!(config.auth.max_failures_per_minute, 0);
    assert_eq!(config.auth.login_max_concurrent, 2);
    assert_eq!(config.auth.login_wait, Duration::from_millis(250));
    assert_eq!(config.server.request_body_timeout, Duration::from_secs(9));
    check_error(
        &[],
        &[
            ("AUTH_LOGIN_MAX_CONCURRENT", "0"),
            ("AUTH_LOGIN_WAIT_MS", "0"),
            ("REQUEST_BODY_TIMEOUT_SECS", "0"),
            ("AUTH_MAX_FAILURES_PER_MINUTE", "1000000"),
        ],
        &[
            "auth.login_max_concurrent",
            "auth.login_wait_ms",
            "server.request_body_timeout_secs",
            "auth.max_failures_per_minute",
        ],
    );
}

#[test]
fn websocket_credential_checks_and_lifetime_are_configurable() {
    let config = load(&[], &[]).expect("valid");
    let ws = &config.websocket;
    assert_eq!(ws.max_session_lifetime, Duration::from_secs(3600));
    assert_eq!(ws.credential_check_interval, Duration::from_secs(5));
    let env = [
        ("WS_MAX_SESSION_LIFETIME_MS", "60000"),
        ("WS_CREDENTIAL_CHECK_INTERVAL_MS", "1000"),
    ];
    let config = load(&[], &env).expect("valid");
    let ws = &config.websocket;
    assert_eq!(ws.max_session_lifetime, Duration::from_secs(60));
    assert_eq!(ws.credential_check_interval, Duration::from_secs(1));
    check_error(
        &[(
            "default.toml",
            "[websocket]\nmax_session_lifetime_ms = 0\ncredential_check_interval_ms = 0\n",
        )],
        &[],
        &[
            "websocket.max_session_lifetime_ms",
            "websocket.credential_check_interval_ms",
        ],
    );
}

#[test]
fn websocket_caps_are_configurable() {
    let config = load(&[], &[]).expect("valid");
    let ws = &config.websocket;
    assert_eq!((ws.max_sessions, ws.max_sessions_per_key), (10_000, 100));
    assert_eq!((ws.max_tickets, ws.max_tickets_per_key), (10_000, 16));
    assert_eq!(ws.tickets_per_minute, 60);
    let env = [
        ("WS_MAX_SESSIONS", "50"),
        ("WS_MAX_SESSIONS_PER_KEY", "5"),
        ("WS_MAX_TICKETS", "40"),
        ("WS_MAX_TICKETS_PER_KEY", "4"),
        ("WS_TICKETS_PER_MINUTE", "10"),
    ];
    let config = load(&[], &env).expect("valid");
    let ws = &config.websocket;
    assert_eq!((ws.max_sessions, ws.max_sessions_per_key), (50, 5));
    assert_eq!((ws.max_tickets, ws.max_tickets_per_key), (40, 4));
    assert_eq!(ws.tickets_per_minute, 10);
    check_error(
        &[(
            "default.toml",
            "[websocket]\nmax_sessions_per_key = 0\nmax_tickets = 0\ntickets_per_minute = 0\n",
        )],
        &[],
        &[
            "websocket.max_sessions_per_key",
            "websocket.max_tickets",
            "websocket.tickets_per_minute",
        ],
    );
}
