//! Approver group membership: a pluggable lookup, OS groups (`getgrouplist`) by default.

use std::ffi::{CStr, CString};

use super::ApprovalError;

/// Answers "which groups is this user in?".
pub trait GroupLookup: Send + Sync {
    /// Names of the groups `user` belongs to (primary and supplementary).
    fn groups_of(&self, user: &str) -> Result<Vec<String>, ApprovalError>;
}

/// OS group membership from the passwd and group databases (NSS).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsGroups;

fn lookup_err(user: &str, detail: impl Into<String>) -> ApprovalError {
    ApprovalError::GroupLookup {
        user: user.to_owned(),
        detail: detail.into(),
    }
}

fn primary_gid(user: &CStr, name: &str) -> Result<libc::gid_t, ApprovalError> {
    let mut buf = vec![0_u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to overwrite.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            user.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(lookup_err(
            name,
            format!("getpwnam_r failed with errno {rc}"),
        ));
    }
    if result.is_null() {
        return Err(lookup_err(name, "no such OS user"));
    }
    Ok(pwd.pw_gid)
}

fn group_name(gid: libc::gid_t) -> Option<String> {
    let mut buf = vec![0_u8; 64 * 1024];
    // SAFETY: an all-zero group is a valid value for getgrgid_r to overwrite.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives it.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

impl GroupLookup for OsGroups {
    fn groups_of(&self, user: &str) -> Result<Vec<String>, ApprovalError> {
        let c_user = CString::new(user).map_err(|_| lookup_err(user, "name contains NUL"))?;
        let gid = primary_gid(&c_user, user)?;
        let mut n: libc::c_int = 64;
        loop {
            let mut gids = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(64)];
            let mut count = n;
            // SAFETY: `gids` holds `count` entries; getgrouplist writes at most that many.
            let rc =
                unsafe { libc::getgrouplist(c_user.as_ptr(), gid, gids.as_mut_ptr(), &mut count) };
            if rc >= 0 {
                gids.truncate(usize::try_from(count).unwrap_or(0));
                return Ok(gids.into_iter().filter_map(group_name).collect());
            }
            if count <= n || n > 65_536 {
                return Err(lookup_err(user, "getgrouplist failed"));
            }
            n = count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_root_group() {
        let groups = OsGroups.groups_of("root").expect("root has groups");
        assert!(groups.iter().any(|g| g == "root"), "{groups:?}");
    }

    #[test]
    fn unknown_user_is_a_lookup_error() {
        assert!(matches!(
            OsGroups.groups_of("dbward-no-such-user-xyz"),
            Err(ApprovalError::GroupLookup { .. })
        ));
    }
}
