//! OS user lookup: uid, gid, home and supplementary groups, from the system's user database (NSS).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::ExecError;

/// What a command needs to run as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Supplementary groups, the primary group included (as `initgroups` would set them).
    pub groups: Vec<u32>,
}

/// Upper bound for the `getpw*_r` buffer: entries beyond this are not real users.
const MAX_BUFFER: usize = 1 << 20;

/// Looks up `name` with `getpwnam_r` and its groups with `getgrouplist`. Blocking (NSS may ask a
/// directory service): call it from a blocking task.
pub fn lookup_user(name: &str) -> Result<UserInfo, ExecError> {
    let c_name = CString::new(name).map_err(|_| ExecError::UnknownUser {
        user: name.to_string(),
    })?;
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, which outlive the call; `c_name` is a valid
    // C string.
    let entry = with_passwd(name, |pwd, buf, result| unsafe {
        libc::getpwnam_r(c_name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result)
    })?;
    let (uid, gid, home) = entry.ok_or_else(|| ExecError::UnknownUser {
        user: name.to_string(),
    })?;
    let groups = group_list(&c_name, gid).map_err(|message| ExecError::UserLookup {
        user: name.to_string(),
        message,
    })?;
    Ok(UserInfo {
        name: name.to_string(),
        uid,
        gid,
        home,
        groups,
    })
}

/// The user the daemon runs as (effective uid). A uid without an entry in the user database gets
/// its number as name and `/` as home, so commands still run.
pub fn current_user() -> Result<UserInfo, ExecError> {
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let label = uid.to_string();
    let mut name_out = None;
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, which outlive the call; the name is copied
    // out before `buf` is released.
    let entry = with_passwd(&label, |pwd, buf, result| unsafe {
        let rc = libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result);
        if rc == 0 && !(*result).is_null() && !(*pwd).pw_name.is_null() {
            name_out = Some(
                CStr::from_ptr((*pwd).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        rc
    })?;
    let Some((_, _, home)) = entry else {
        return Ok(UserInfo {
            name: label,
            uid,
            gid,
            home: PathBuf::from("/"),
            groups: vec![gid],
        });
    };
    let name = name_out.unwrap_or(label);
    let groups = CString::new(name.clone())
        .ok()
        .and_then(|c| group_list(&c, gid).ok())
        .unwrap_or_else(|| vec![gid]);
    Ok(UserInfo {
        name,
        uid,
        gid,
        home,
        groups,
    })
}

/// Runs a `getpw*_r` call, growing the buffer on ERANGE; returns (uid, gid, home) or `None` when
/// there is no such user.
fn with_passwd(
    label: &str,
    mut call: impl FnMut(*mut libc::passwd, &mut Vec<libc::c_char>, *mut *mut libc::passwd) -> i32,
) -> Result<Option<(u32, u32, PathBuf)>, ExecError> {
    // SAFETY: sysconf has no preconditions.
    let hint = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut size = usize::try_from(hint)
        .unwrap_or(4096)
        .clamp(1024, MAX_BUFFER);
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; size];
        // SAFETY: an all-zero passwd is a valid value for an out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, &mut buf, &mut result);
        if rc == libc::ERANGE && size < MAX_BUFFER {
            size *= 2;
            continue;
        }
        if rc != 0 {
            // Some NSS modules report "not found" as one of these instead of a null result.
            if [libc::ENOENT, libc::ESRCH, libc::EBADF, libc::EPERM].contains(&rc) {
                return Ok(None);
            }
            return Err(ExecError::UserLookup {
                user: label.to_string(),
                message: std::io::Error::from_raw_os_error(rc).to_string(),
            });
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `pwd`'s pointers point into `buf`, still alive here.
        let home = if pwd.pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            let bytes = unsafe { CStr::from_ptr(pwd.pw_dir) }.to_bytes();
            PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
        };
        return Ok(Some((pwd.pw_uid, pwd.pw_gid, home)));
    }
}

/// `getgrouplist`, growing the list until it fits.
fn group_list(name: &CStr, gid: u32) -> Result<Vec<u32>, String> {
    let mut count: libc::c_int = 32;
    for _ in 0..16 {
        let mut groups: Vec<libc::gid_t> = vec![0; count as usize];
        let mut n = count;
        // SAFETY: `groups` has room for `n` entries; getgrouplist updates `n`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return Ok(groups);
        }
        // Too small: `n` now holds the size needed (glibc), else double.
        count = if n > count { n } else { count * 2 };
    }
    Err("getgrouplist kept reporting more groups than it returned".into())
}
