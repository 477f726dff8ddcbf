//! The `discovery` section as written: the back-end and its Consul or Kubernetes settings.

use serde::{Deserialize, Serialize};

use super::comma_list;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryType {
    #[default]
    Static,
    Consul,
    Kubernetes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDiscovery {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: DiscoveryType,
    pub static_file: String,
    pub poll_interval_ms: u64,
    /// `DISCOVERY_REQUIRED`: true makes an unreachable back-end at start-up a start-up error;
    /// false starts degraded (warning, metric, `/ready` says so) and keeps trying.
    pub required: bool,
    pub consul: RawConsul,
    pub kubernetes: RawKubernetes,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        RawDiscovery {
            enabled: true,
            kind: DiscoveryType::Static,
            static_file: "config/services.json".into(),
            poll_interval_ms: 1000,
            required: true,
            consul: RawConsul::default(),
            kubernetes: RawKubernetes::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConsul {
    /// `CONSUL_ADDR`: `host:port` or `http://host:port` of a Consul agent.
    pub addr: String,
    /// `CONSUL_TOKEN`: sent as `X-Consul-Token`. Masked by `check-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `CONSUL_DATACENTER`: `dc` on every query; the agent's own when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// Services to watch by name. Empty: every service carrying `tag`.
    #[serde(deserialize_with = "comma_list")]
    pub services: Vec<String>,
    pub tag: String,
    /// Longest time one blocking query may wait (Consul's `wait`).
    pub wait_secs: u64,
    /// Least time between two queries of one service when the index does not move.
    pub min_query_interval_ms: u64,
    /// First and longest pause after an error (jittered, doubling).
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// `CONSUL_REGISTER`: register this gateway with an HTTP check on `/health`, deregister
    /// on graceful shutdown.
    pub register: bool,
    pub register_name: String,
    /// Address Consul should check and others should call; the bind address when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register_address: Option<String>,
}

impl Default for RawConsul {
    fn default() -> Self {
        RawConsul {
            addr: "127.0.0.1:8500".into(),
            token: None,
            datacenter: None,
            services: Vec::new(),
            tag: "ai-model".into(),
            wait_secs: 60,
            min_query_interval_ms: 1000,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            register: false,
            register_name: "ai-gateway".into(),
            register_address: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKubernetes {
    /// `K8S_NAMESPACE`: where EndpointSlices are watched.
    pub namespace: String,
    /// EndpointSlices carrying this label are watched, unless `services` names them.
    pub label_selector: String,
    /// Services to route to by name (their `kubernetes.io/service-name` label).
    #[serde(deserialize_with = "comma_list")]
    pub services: Vec<String>,
    /// `K8S_API_URL`: talk to this API server without credentials instead of the in-cluster
    /// or kubeconfig configuration (`kubectl proxy`, tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for RawKubernetes {
    fn default() -> Self {
        RawKubernetes {
            namespace: "default".into(),
            label_selector: "aigateway.io/upstream=true".into(),
            services: Vec::new(),
            api_url: None,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
        }
    }
}
