//! `dnsensor check-config`: every problem of a configuration file, each with its line and key.
//! A key found bad is reported, left out, and the check goes on with the rest.

use std::path::Path;

use crate::cli::{CaptureArgs, CollectorArgs, CommonArgs, DnstapArgs, ProxyArgs};
use crate::config::{
    capture, collector, common, dnstap, err, header, key_at, parse_file, proxy, read, toml_message,
    ConfigError, FileConfig, ProxySection,
};

/// Checks a whole file as `check-config` does: every key of every section, with no flags, and
/// returns every problem found, each with its line and key. A key found bad is reported and then
/// left out (as if at its default), and the check goes on, so that one run shows everything to
/// fix: first what the format rejects (unknown keys, wrong types), then the values of the keys
/// every mode shares, then `[collector]`, `[capture]`, `[proxy]` and `[dnstap]`. A problem with
/// a key that is missing has no line. Sockets are not bound (the daemon may be running), but a
/// unix socket's directory must exist.
pub fn check_file(path: &Path) -> Vec<ConfigError> {
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let at = |line: Option<usize>, msg: &str| {
        let problem = ConfigError(match line {
            Some(l) => format!("config {}: line {l}: {msg}", path.display()),
            None => format!("config {}: {msg}", path.display()),
        });
        (line, problem)
    };
    // Not TOML at all: nothing more can be read.
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return parse_file(path, &text).err().into_iter().collect();
    };
    // (line, problem): shown in the order of the file, problems without a line last.
    let mut problems: Vec<(Option<usize>, ConfigError)> = Vec::new();
    // What the format rejects, one key at a time: the table is rendered again after each
    // removal, so a span points into the rendering, and the key is then found in `text`.
    loop {
        let rendered = table.to_string();
        let Err(e) = toml::from_str::<FileConfig>(&rendered) else {
            break;
        };
        match e.span().and_then(|span| key_at(&rendered, span.start)) {
            Some((section, key)) if remove_key(&mut table, section.as_deref(), &key) => {
                let msg = toml_message(&e, Some(&key));
                problems.push(at(line_of(&text, section.as_deref(), &key), &msg));
            }
            _ => {
                problems.push(at(None, &toml_message(&e, None)));
                return in_file_order(problems);
            }
        }
    }
    type Check = fn(&FileConfig) -> Result<(), ConfigError>;
    let checks: [(Option<&str>, Check); 5] = [
        (None, |f| common(&CommonArgs::default(), f).map(drop)),
        (Some("collector"), |f| match f.collector.listen {
            Some(_) => collector(&CollectorArgs::default(), f).map(drop),
            None => Ok(()),
        }),
        (Some("capture"), |f| {
            match f.capture.interface.is_some() || f.capture.read.is_some() {
                true => capture(&CaptureArgs::default(), f).map(drop),
                false => Ok(()),
            }
        }),
        (Some("proxy"), |f| {
            match f.proxy != ProxySection::default() {
                true => proxy(&ProxyArgs::default(), f).map(drop),
                false => Ok(()),
            }
        }),
        (Some("dnstap"), check_dnstap),
    ];
    // A key left out may leave a required one missing: that is not another problem.
    let mut removed: Vec<(Option<&str>, String)> = Vec::new();
    for (section, check) in checks {
        // The table read before and only lost keys since, so it still reads.
        while let Ok(file) = toml::from_str::<FileConfig>(&table.to_string()) {
            let Err(e) = check(&file) else { break };
            let msg = match section {
                Some(s) => format!("[{s}] {e}"),
                None => e.0.clone(),
            };
            // Messages start with the key at fault; it is in the section or a shared one.
            let key = e.0.split(':').next().unwrap_or_default();
            if removed
                .iter()
                .any(|(s, k)| k == key && (*s == section || s.is_none()))
            {
                break;
            }
            let place = [section, None]
                .into_iter()
                .find(|s| remove_key(&mut table, *s, key));
            match place {
                Some(s) => {
                    problems.push(at(line_of(&text, s, key), &msg));
                    removed.push((s, key.to_owned()));
                }
                None => {
                    problems.push(at(None, &msg));
                    break;
                }
            }
        }
    }
    in_file_order(problems)
}

/// The problems ordered by line, those without one last.
fn in_file_order(mut problems: Vec<(Option<usize>, ConfigError)>) -> Vec<ConfigError> {
    problems.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    problems.into_iter().map(|(_, p)| p).collect()
}

/// The line number in `text` of `key` in table `section` (`None`: the top, before any header).
fn line_of(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header(line) {
            current = Some(h);
        } else if current.as_deref() == section
            && line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return Some(i + 1);
        }
    }
    None
}

/// Removes `key` from table `section` (`None`: the top); false when it is not there.
fn remove_key(table: &mut toml::Table, section: Option<&str>, key: &str) -> bool {
    match section {
        None => table.remove(key).is_some(),
        Some(s) => table
            .get_mut(s)
            .and_then(toml::Value::as_table_mut)
            .is_some_and(|t| t.remove(key).is_some()),
    }
}

/// The `[dnstap]` part of [`check_file`].
fn check_dnstap(file: &FileConfig) -> Result<(), ConfigError> {
    if file.dnstap.listen.is_some() {
        let args = DnstapArgs {
            common: CommonArgs::default(),
            listen: Vec::new(),
            client_responses: false,
            max_frame_bytes: None,
            max_connections: None,
        };
        for listen in dnstap(&args, file)?.listen {
            if let dnsensor_dnstap::Listen::Unix(path) = &listen {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                if let Some(dir) = dir {
                    if !dir.is_dir() {
                        return err(format!(
                            "listen: cannot listen on {listen}: directory {} does not exist",
                            dir.display()
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_table_and_line() {
        let text = "window = 5\n\"sensor-id\"=\"a\"\n[proxy] # the proxy\nthreads = 2\n\n[ dnstap ]\nlisten = []\n";
        assert_eq!(line_of(text, None, "window"), Some(1));
        assert_eq!(line_of(text, None, "sensor-id"), Some(2));
        assert_eq!(line_of(text, Some("proxy"), "threads"), Some(4));
        assert_eq!(line_of(text, Some("dnstap"), "listen"), Some(7));
        assert_eq!(line_of(text, None, "threads"), None);
        assert_eq!(line_of(text, Some("proxy"), "listen"), None);
        let at = text.find("2\n").unwrap();
        assert_eq!(
            key_at(text, at),
            Some((Some("proxy".into()), "threads".into()))
        );
        assert_eq!(key_at(text, 0), Some((None, "window".into())));
    }
}
