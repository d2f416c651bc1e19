//! The capabilities a command must not inherit from the daemon.
//!
//! The daemon needs CAP_NET_ADMIN (addresses, routes) and CAP_NET_RAW (VRRP, gratuitous ARP). Run
//! under systemd as the database user with `AmbientCapabilities=`, those sit in its ambient set,
//! and the ambient set survives `execve`: without this module a postmaster started through
//! `commands.start`, and so every backend, `archive_command` and `COPY … TO PROGRAM` under it,
//! would hold them too.
//!
//! In the forked child, before `execve`, [`clear_inherited`] (async-signal-safe: two system calls
//! on stack data) does:
//! - always: clear the ambient set (`PR_CAP_AMBIENT_CLEAR_ALL`) and the inheritable set;
//! - when the command runs as a non-root user (after the user switch, or as the daemon's own
//!   non-root user): clear the permitted and effective sets too. `setuid` to a non-root user
//!   already clears them, unless the daemon was started with `SECBIT_KEEP_CAPS` or
//!   `SECBIT_NO_SETUID_FIXUP` (systemd `SecureBits=`); clearing them explicitly does not depend on
//!   that.
//!
//! So a non-root command starts with CapEff = CapPrm = CapInh = CapAmb = 0. A command run as root
//! gets what root gets at `execve` under the daemon's bounding set: `commands.*` may be any argv,
//! and one run as root (say, a fence that edits the firewall) may need exactly those rights.
//!
//! What is deliberately left alone:
//! - the bounding set: it only limits what a set-user-ID or file-capability program installed by
//!   the administrator may gain (`sudo`, `ssh-keysign`, `ping`); those grants are the
//!   administrator's, not ours to pass on or withhold.
//! - `PR_SET_NO_NEW_PRIVS`, for the same reason: it would also stop set-user-ID programs, and
//!   `gpactivatestandby` and `gpinitstandby` drive ssh, whose host-based authentication runs the
//!   set-user-ID `ssh-keysign`. Clearing the sets above already removes everything the daemon
//!   itself holds. (The shipped systemd unit sets `NoNewPrivileges=yes` on the whole service; that
//!   is the administrator's choice to make, not the runner's.)

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears what the command must not inherit (see the module documentation). `target_is_root`:
/// the command runs with uid 0. Call in the child after any user switch, right before `execve`.
pub(crate) fn clear_inherited(target_is_root: bool) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // EINVAL: a kernel older than 4.3 has no ambient set, so there is nothing to clear.
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    if target_is_root {
        // Keep permitted and effective as they are; drop only the inheritable set.
        // SAFETY: capget writes two CapData into `data`, which is large enough for version 3.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capget,
                &mut header as *mut CapHeader,
                data.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        for word in &mut data {
            word.inheritable = 0;
        }
    }
    // SAFETY: capset reads the header and two CapData; lowering sets is always permitted.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
