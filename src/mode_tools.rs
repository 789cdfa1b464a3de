//! The small key and batch commands: `keygen` writes a collector key pair, `inspect` opens
//! sealed batches and prints their records. Both are for operators at a terminal.

use std::io::Write;
use std::process::ExitCode;

use dnsensor_delivery::batch;
use dnsensor_delivery::keys::{self, SecretKey};

use crate::cli::{InspectArgs, KeygenArgs};

/// Largest plaintext `inspect` will open: far beyond any batch a sensor writes, and a bound
/// against a hostile file.
const INSPECT_MAX_PLAINTEXT: usize = 1 << 30;

/// `dnsensor keygen --out DIR`.
pub fn keygen(args: KeygenArgs) -> ExitCode {
    match keys::write_keypair(&args.out) {
        Ok((secret, public)) => {
            println!(
                "wrote {} (secret: keep it on the collector only) and {} (give it to sensors)",
                secret.display(),
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dnsensor: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `dnsensor inspect --key FILE BATCH...`: every batch it can open is printed; each one it
/// cannot is named on stderr, and the exit code is then 1.
pub fn inspect(args: InspectArgs) -> ExitCode {
    let secret = match SecretKey::read(&args.key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("dnsensor: error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for path in &args.batches {
        let opened = std::fs::read(path)
            .map_err(|e| dnsensor_core::describe_io_error(&e))
            .and_then(|bytes| {
                batch::open(&secret, &bytes, INSPECT_MAX_PLAINTEXT).map_err(|e| e.to_string())
            });
        match opened {
            Ok(b) => {
                if out.write_all(&b.ndjson).is_err() {
                    // stdout closed (a pager quit): nothing more to do.
                    return ExitCode::from(1);
                }
            }
            Err(e) => {
                eprintln!("dnsensor: error: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
