//! Model routing: which service serves a requested model, and under which upstream name.

use std::collections::HashMap;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub service: &'a str,
    pub upstream_model: &'a str,
    /// Named by a configured alias (not `<service>/<model>`).
    pub alias: bool,
}

impl Route<'_> {
    /// The route as a metric label, from a set the configuration bounds: the alias, or
    /// `<service>/*` for any model a client names within a service.
    pub fn label(&self, requested: &str) -> String {
        if self.alias {
            requested.to_string()
        } else {
            // Built directly: every request of a `<service>/<model>` route makes this label.
            let mut label = String::with_capacity(self.service.len() + 2);
            label.push_str(self.service);
            label.push_str("/*");
            label
        }
    }
}

/// A configured alias: `name` is served by `service` as `upstream_model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAlias {
    pub name: String,
    pub service: String,
    pub upstream_model: String,
}

/// Resolves model names: aliases first, then `<service>/<upstream-model>`.
#[derive(Debug, Default)]
pub struct ModelRouter {
    aliases: HashMap<String, ModelAlias>,
}

impl ModelRouter {
    pub fn new(aliases: Vec<ModelAlias>) -> Self {
        ModelRouter {
            aliases: aliases.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }

    pub fn aliases(&self) -> impl Iterator<Item = &ModelAlias> {
        self.aliases.values()
    }

    /// `service_exists` says whether a service of that name is known (configured or
    /// discovered). `None` means the model is unknown.
    pub fn resolve<'a>(
        &'a self,
        model: &'a str,
        service_exists: impl Fn(&str) -> bool,
    ) -> Option<Route<'a>> {
        if let Some(alias) = self.aliases.get(model) {
            return Some(Route {
                service: &alias.service,
                upstream_model: &alias.upstream_model,
                alias: true,
            });
        }
        let (service, upstream_model) = model.split_once('/')?;
        (!upstream_model.is_empty() && service_exists(service)).then_some(Route {
            service,
            upstream_model,
            alias: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> ModelRouter {
        ModelRouter::new(vec![ModelAlias {
            name: "smol".into(),
            service: "python-models".into(),
            upstream_model: "smollm2-135m".into(),
        }])
    }

    fn check(model: &str, expected: Option<(&str, &str)>) {
        let router = router();
        let route = router.resolve(model, |s| s == "python-models" || s == "openai");
        assert_eq!(
            route.map(|r| (r.service, r.upstream_model)),
            expected,
            "{model}"
        );
    }

    #[test]
    fn resolves_aliases_and_service_prefixes() {
        check("smol", Some(("python-models", "smollm2-135m")));
        check("openai/gpt-4o-mini", Some(("openai", "gpt-4o-mini")));
        check(
            "python-models/org/model",
            Some(("python-models", "org/model")),
        );
        check("unknown/x", None);
        check("openai/", None);
        check("gpt-4o", None);
        check("", None);
    }

    #[test]
    fn labels_are_the_alias_or_the_service() {
        let router = router();
        let exists = |s: &str| s == "python-models" || s == "openai";
        let label = |model: &str| router.resolve(model, exists).map(|r| r.label(model));
        assert_eq!(label("smol").as_deref(), Some("smol"));
        assert_eq!(label("openai/gpt-4o-mini").as_deref(), Some("openai/*"));
    }
}
