//! Secrets from files: `<NAME>_FILE` names a file whose content is `<NAME>`'s value, the way
//! Docker/Swarm secrets (`/run/secrets/…`) and Kubernetes secret volumes hand them over, so
//! they need not sit in the environment. `DATABASE_PASSWORD_FILE` puts a password into
//! `DATABASE_URL` (`postgres://gateway@postgres/gateway`), so the database's own secret file
//! (`POSTGRES_PASSWORD_FILE`) serves both.

/// Variables that may come from a file instead.
pub const FILE_VARIABLES: &[&str] = &["JWT_SECRET", "DATABASE_URL", "REDIS_URL", "CONSUL_TOKEN"];

/// Replaces every `<NAME>_FILE` (for [`FILE_VARIABLES`]) by `<NAME>` with the file's content,
/// and applies `DATABASE_PASSWORD_FILE` to `DATABASE_URL`. Returns the variables and every
/// problem found, each naming its variable.
pub fn resolve(vars: Vec<(String, String)>) -> (Vec<(String, String)>, Vec<String>) {
    let mut errors = Vec::new();
    let mut out: Vec<(String, String)> = Vec::with_capacity(vars.len());
    let mut password_file = None;
    let mut from_files = Vec::new();
    for (name, value) in vars {
        if name == "DATABASE_PASSWORD_FILE" {
            password_file = Some(value);
            continue;
        }
        match name
            .strip_suffix("_FILE")
            .filter(|stem| FILE_VARIABLES.contains(stem))
        {
            Some(stem) => from_files.push((stem.to_string(), name, value)),
            None => out.push((name, value)),
        }
    }
    for (stem, name, path) in from_files {
        if out.iter().any(|(n, v)| *n == stem && !v.is_empty()) {
            errors.push(format!("{name}: set {stem} or {name}, not both"));
            continue;
        }
        match read_secret(&name, &path) {
            Ok(value) => {
                out.retain(|(n, _)| *n != stem);
                out.push((stem, value));
            }
            Err(error) => errors.push(error),
        }
    }
    if let Some(path) = password_file {
        let password = read_secret("DATABASE_PASSWORD_FILE", &path);
        let url = out.iter_mut().find(|(n, _)| n == "DATABASE_URL");
        match (password, url) {
            (Err(error), _) => errors.push(error),
            (Ok(_), None) => errors.push(
                "DATABASE_PASSWORD_FILE: needs DATABASE_URL (postgres://USER@HOST/DB) to put the password into".into(),
            ),
            (Ok(password), Some((_, url))) => match with_password(url, &password) {
                Ok(full) => *url = full,
                Err(error) => errors.push(format!("DATABASE_PASSWORD_FILE: {error}")),
            },
        }
    }
    (out, errors)
}

/// The file's content without its trailing line break; an empty secret is an error.
fn read_secret(name: &str, path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{name}: cannot read {path}: {error}"))?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(format!("{name}: {path} is empty"));
    }
    Ok(value.to_string())
}

/// `scheme://user@host…` → `scheme://user:<percent-encoded password>@host…`.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("DATABASE_URL is not a URL like postgres://USER@HOST/DB")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Err("DATABASE_URL names no user (postgres://USER@HOST/DB)".into());
    };
    let user = &rest[..at];
    if user.contains(':') {
        return Err("DATABASE_URL already holds a password".into());
    }
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn secret(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }

    #[test]
    fn a_file_variable_becomes_the_plain_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwt = secret(&dir, "jwt", "s3cret-from-a-file\n");
        let (out, errors) = resolve(vars(&[("JWT_SECRET_FILE", &jwt), ("LOG_LEVEL", "info")]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out,
            vars(&[("LOG_LEVEL", "info"), ("JWT_SECRET", "s3cret-from-a-file")])
        );
    }

    #[test]
    fn the_database_password_is_encoded_into_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret(&dir, "pw", "p@ss:w/rd 1\r\n");
        let (out, errors) = resolve(vars(&[
            ("DATABASE_URL", "postgres://gateway@postgres:5432/gateway"),
            ("DATABASE_PASSWORD_FILE", &pw),
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out,
            vars(&[(
                "DATABASE_URL",
                "postgres://gateway:p%40ss%3Aw%2Frd%201@postgres:5432/gateway"
            )])
        );
    }

    #[test]
    fn every_mistake_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = secret(&dir, "empty", "\n");
        let ok = secret(&dir, "ok", "x");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("JWT_SECRET_FILE", "/nonexistent/jwt")],
                "JWT_SECRET_FILE: cannot read /nonexistent/jwt",
            ),
            (&[("REDIS_URL_FILE", &empty)], "REDIS_URL_FILE: "),
            (
                &[("JWT_SECRET", "a"), ("JWT_SECRET_FILE", &ok)],
                "set JWT_SECRET or JWT_SECRET_FILE, not both",
            ),
            (&[("DATABASE_PASSWORD_FILE", &ok)], "needs DATABASE_URL"),
            (
                &[
                    ("DATABASE_URL", "postgres://u:p@h/d"),
                    ("DATABASE_PASSWORD_FILE", &ok),
                ],
                "already holds a password",
            ),
            (
                &[
                    ("DATABASE_URL", "postgres://h/d"),
                    ("DATABASE_PASSWORD_FILE", &ok),
                ],
                "names no user",
            ),
        ];
        for (input, fragment) in cases {
            let (_, errors) = resolve(vars(input));
            assert!(
                errors.len() == 1 && errors[0].contains(fragment),
                "{input:?}: {errors:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn other_file_variables_are_left_alone() {
        let input = vars(&[("TLS_CERT_FILE", "/etc/tls/cert.pem")]);
        assert_eq!(resolve(input.clone()), (input, Vec::new()));
    }

    #[test]
    fn the_configuration_takes_secrets_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwt = secret(&dir, "jwt", "0123456789abcdef0123456789abcdef-from-file\n");
        let source = super::super::ConfigSource {
            dir: dir.path().to_path_buf(),
            env: "production".into(),
        };
        let layer =
            super::super::env::environment_layer(vars(&[("JWT_SECRET_FILE", &jwt)]).into_iter());
        let raw = super::super::load_raw(&source, layer).expect("loads");
        assert_eq!(
            raw.auth.jwt_secret.as_deref(),
            Some("0123456789abcdef0123456789abcdef-from-file")
        );
        let layer = super::super::env::environment_layer(
            vars(&[("JWT_SECRET_FILE", "/nonexistent/jwt")]).into_iter(),
        );
        let error = super::super::load_raw(&source, layer)
            .expect_err("unreadable secret file")
            .to_string();
        assert!(
            error.contains("JWT_SECRET_FILE: cannot read /nonexistent/jwt"),
            "{error}"
        );
    }
}
