//! SIGHUP: re-reads the configuration file and applies what can change while running (privacy
//! filters, log level, upload settings); every other changed key is logged as needing a restart.

use std::path::PathBuf;
use std::time::Duration;

use dnsensor_core::pipeline::PrivacyControl;
use dnsensor_delivery::upload::{read_token_file, UploaderConfig};
use dnsensor_delivery::UploadControl;

use crate::cli::CommonArgs;
use crate::config::{self, Common, Delivery, FileConfig};

/// How long a reload waits for the pipeline's workers to switch privacy filters. A worker first
/// extracts what its queue holds, at most a queue's worth, which takes milliseconds.
const PRIVACY_SWITCH_WAIT: Duration = Duration::from_secs(2);

/// What a reload needs: the flags (they still override the file), the settings running now,
/// the pipeline's privacy control and, with `--output collector`, the uploader's control.
pub struct Reloader {
    args: CommonArgs,
    running: Common,
    /// The mode's own `[section]` as it was read, to tell whether it changed.
    section: fn(&FileConfig) -> String,
    running_section: String,
    privacy: PrivacyControl,
    upload: Option<UploadControl>,
}

impl Reloader {
    /// `section` renders the mode's own table, e.g. `|f| format!("{:?}", f.proxy)`.
    pub fn new(
        args: &CommonArgs,
        running: &Common,
        file: &FileConfig,
        section: fn(&FileConfig) -> String,
        privacy: PrivacyControl,
        upload: Option<UploadControl>,
    ) -> Reloader {
        Reloader {
            args: args.clone(),
            running: running.clone(),
            section,
            running_section: section(file),
            privacy,
            upload,
        }
    }

    fn config_path(&self) -> Option<&PathBuf> {
        self.args.config.as_ref()
    }

    /// Reads the file again and applies it; a bad file changes nothing.
    pub fn reload(&mut self) {
        let Some(path) = self.config_path() else {
            log::warn!("reload: dnsensor was started without --config; nothing to reload");
            return;
        };
        let file = match config::load(path) {
            Ok(f) => f,
            Err(e) => {
                log::error!("reload: {e}; the running configuration stays");
                return;
            }
        };
        let new = match config::common(&self.args, &file) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload: {e}; the running configuration stays");
                return;
            }
        };
        let old = &self.running;
        let mut applied: Vec<String> = Vec::new();
        if new.privacy != old.privacy {
            if !self
                .privacy
                .set(new.privacy_filter.clone(), PRIVACY_SWITCH_WAIT)
            {
                log::warn!("reload: a pipeline worker is still extracting its queue under the old privacy filters; it switches when done");
            }
            applied.push("privacy filters".into());
        }
        if new.log_level != old.log_level {
            log::set_max_level(new.log_level);
            applied.push("log-level".into());
        }
        // The token file is read again even under the same name: that is how a token is renewed.
        // The uploader compares with the settings it runs with, so nothing is kept here.
        if let (Some(control), Some(delivery), Some(_)) =
            (&self.upload, &new.delivery, &old.delivery)
        {
            match upload_settings(delivery)
                .and_then(|c| control.apply(c).map_err(|e| e.to_string()))
            {
                Ok(changed) if changed.is_empty() => {}
                Ok(changed) => applied.push(format!("upload settings ({})", changed.join(", "))),
                Err(e) => log::error!("reload: {e}; the running upload settings stay"),
            }
        }
        let delivery_differs = |part: fn(&Delivery) -> String| {
            new.delivery.as_ref().map(part) != old.delivery.as_ref().map(part)
        };
        let restart: Vec<&str> = [
            ("output", new.output != old.output),
            ("window", new.window != old.window),
            ("sensor-id", new.sensor_id != old.sensor_id),
            ("workers", new.workers != old.workers),
            ("queue-depth", new.queue_depth != old.queue_depth),
            ("max-entries", new.max_entries != old.max_entries),
            ("client-counts", new.client_counts != old.client_counts),
            (
                "collector-pubkey",
                delivery_differs(|d| d.pubkey.display().to_string()),
            ),
            ("zstd-level", delivery_differs(|d| d.zstd_level.to_string())),
            ("spool keys", delivery_differs(|d| format!("{:?}", d.spool))),
            (
                "the mode's own table",
                (self.section)(&file) != self.running_section,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect();
        if applied.is_empty() {
            log::info!("reload: nothing that can change while running has changed");
        } else {
            log::info!("reload: applied {}", applied.join(", "));
        }
        if !restart.is_empty() {
            log::warn!(
                "reload: changed but only applied at a restart: {}",
                restart.join(", ")
            );
        }
        // Only what was applied becomes the running configuration, so a change that needs a
        // restart is reported again at the next reload.
        self.running.privacy = new.privacy;
        self.running.privacy_filter = new.privacy_filter;
        self.running.log_level = new.log_level;
    }
}

/// The upload settings of `delivery`, with the token read from its file.
fn upload_settings(delivery: &Delivery) -> Result<UploaderConfig, String> {
    let token =
        read_token_file(&delivery.token_file).map_err(|e| format!("collector-token-file: {e}"))?;
    Ok(UploaderConfig {
        token,
        ..delivery.upload.clone()
    })
}
