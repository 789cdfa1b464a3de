//! Dropping root after the privileged start-up work (opening a capture, binding port 53).
//! Supplementary groups, then the group, then the user, and a check that root cannot come back.

use nix::unistd::{self, Gid, Uid, User};

/// Switches the whole process to `name` and its primary group. Call it before starting threads
/// that must not keep root, and after everything that needs root is open.
pub fn drop_to(name: &str) -> Result<(), String> {
    let user = User::from_name(name)
        .map_err(|e| format!("user: cannot look up `{name}`: {e}"))?
        .ok_or_else(|| format!("user: no such user `{name}`"))?;
    if user.uid.is_root() {
        return Err(format!("user: `{name}` is root; name an unprivileged user"));
    }
    if !Uid::effective().is_root() {
        return Err(format!(
            "user: cannot switch to `{name}`: not running as root (uid {})",
            Uid::effective()
        ));
    }
    // The order matters: once the uid is dropped, the groups can no longer be changed.
    unistd::setgroups(&[user.gid]).map_err(|e| format!("user: setgroups: {e}"))?;
    unistd::setgid(user.gid).map_err(|e| format!("user: setgid({}): {e}", user.gid))?;
    unistd::setuid(user.uid).map_err(|e| format!("user: setuid({}): {e}", user.uid))?;
    if unistd::setuid(Uid::from_raw(0)).is_ok() || unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err("user: root privileges could be regained after dropping them".into());
    }
    log::info!(
        "running as user {name} (uid {}, gid {})",
        user.uid,
        user.gid
    );
    Ok(())
}
