//! Writing the AWS SAM template of an environment of `venturekit.toml` (cargo feature
//! `deploy`, off in Lambda builds).

use super::App;
use crate::deploy::EnvConfig;
use crate::error::Error;

impl App {
    /// The SAM template of environment `env`, with `code_uri` pointing at the
    /// `cargo lambda build` output.
    pub fn template(&self, env: &str, code_uri: &str) -> Result<String, Error> {
        Ok(crate::deploy::to_text(&self.template_value(env, code_uri)?))
    }

    /// The template of environment `env` as a JSON value (for inspection and tests).
    pub fn template_value(&self, env: &str, code_uri: &str) -> Result<serde_json::Value, Error> {
        let (app, binary, settings) = self.deploy_target(env)?;
        let models = if settings.websocket.validate_requests {
            self.request_models()?
        } else {
            Vec::new()
        };
        Ok(crate::deploy::template_value(
            &app,
            &binary,
            settings,
            code_uri,
            &self.app_tables,
            !self.topic_rules.is_empty(),
            &models,
        ))
    }

    /// Each action's message schema, for API Gateway request validation.
    #[cfg(feature = "contract")]
    fn request_models(&self) -> Result<Vec<(String, serde_json::Value)>, Error> {
        let contract = self.contract();
        let loose: Vec<&str> = contract
            .actions
            .iter()
            .filter(|a| !a.typed)
            .map(|a| a.name.as_str())
            .collect();
        if !loose.is_empty() {
            return Err(Error::Config(format!(
                "websocket.validateRequests = true, but these actions have no message schema: {} (derive schemars::JsonSchema on their message types)",
                loose.join(", ")
            )));
        }
        Ok(contract
            .actions
            .into_iter()
            .map(|a| (a.name, a.message))
            .collect())
    }

    #[cfg(not(feature = "contract"))]
    fn request_models(&self) -> Result<Vec<(String, serde_json::Value)>, Error> {
        Err(Error::Config(
            "websocket.validateRequests = true needs the message schemas: enable venturekit-ws's `contract` feature for the `template` command".into(),
        ))
    }

    /// What a template of `env` is made from: the app name, the binary name and the
    /// environment's settings (which must have WebSockets enabled).
    fn deploy_target(&self, env: &str) -> Result<(String, String, &EnvConfig), Error> {
        let deploy = self.deploy.as_ref().ok_or_else(|| {
            Error::Config(
                "no venturekit.toml registered: create venturekit.toml beside Cargo.toml with an `[env.dev]` table (see the deploy guide), then register it in main with `.deploy_config(\"venturekit.toml\", include_str!(\"../venturekit.toml\"))?` on the App".into(),
            )
        })?;
        let settings = deploy.env(env).map_err(|e| Error::Config(e.to_string()))?;
        if !settings.websocket.enabled {
            return Err(Error::Config(format!(
                "{}: websocket.enabled = false for env `{env}`: nothing to deploy",
                deploy.file
            )));
        }
        let binary = self.binary_name();
        let app = deploy.app_name.clone().unwrap_or_else(|| binary.clone());
        Ok((app, binary, settings))
    }

    pub(super) fn write_template(
        &self,
        env: &str,
        out: Option<&std::path::Path>,
        code_uri: Option<String>,
    ) -> Result<(), Error> {
        let (_, binary, settings) = self.deploy_target(env)?;
        let arch = settings.lambda.architecture.clone();
        let build_dir = format!("target/lambda/{arch}/{binary}/");
        let code_uri = match (code_uri, out) {
            (Some(uri), _) => uri,
            (None, Some(out)) => relative_to(out, &build_dir)?,
            (None, None) => build_dir.clone(),
        };
        let text = self.template(env, &code_uri)?;
        match out {
            Some(path) => {
                std::fs::write(path, text)
                    .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
                eprintln!(
                    "wrote {} (CodeUri {code_uri}); build with: cargo lambda build --release{} -p {binary} --no-default-features --lambda-dir target/lambda/{arch}",
                    path.display(),
                    if arch == "arm64" { " --arm64" } else { "" }
                );
            }
            None => {
                #[allow(clippy::print_stdout)]
                {
                    print!("{text}");
                }
            }
        }
        Ok(())
    }
}

/// `target` (relative to the current directory) as seen from the directory of `file`.
fn relative_to(file: &std::path::Path, target: &str) -> Result<String, Error> {
    let cwd = std::env::current_dir()?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| Error::Config(format!("cannot resolve {}: {e}", dir.display())))?;
    let cwd = std::fs::canonicalize(cwd)?;
    let common = dir
        .components()
        .zip(cwd.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = dir
        .components()
        .skip(common)
        .map(|_| "..".to_owned())
        .collect();
    parts.extend(
        cwd.components()
            .skip(common)
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.push(target.to_owned());
    Ok(parts.join("/"))
}
