//! Temporary storage under a budget.
//!
//! Besides its database, SQLite writes temporary files for a connection:
//! sorts and groupings that do not fit in memory, materialized subqueries,
//! statement journals. Nothing else bounds them, so a component could fill
//! the disk with one `ORDER BY` over generated rows. Each component's
//! connection therefore opens through a VFS of its own: the platform's
//! default VFS, except that the bytes written to temporary files count
//! against `limits.temp_mib`; past it a write fails as a full disk, and the
//! statement with it, with an error naming the limit.

use std::ffi::{CString, c_char, c_int};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Result, bail};
use rusqlite::ffi;

/// What one connection may keep in temporary files at once.
#[derive(Debug)]
pub struct TempBudget {
    limit: u64,
    used: AtomicU64,
    exceeded: AtomicBool,
}

impl TempBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<TempBudget> {
        Arc::new(TempBudget { limit, used: AtomicU64::new(0), exceeded: AtomicBool::new(false) })
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a write was refused since the last call, forgetting it.
    pub fn take_exceeded(&self) -> bool {
        self.exceeded.swap(false, Ordering::Relaxed)
    }

    /// Bytes in temporary files now.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn grow(&self, by: u64) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used.saturating_add(by) > self.limit {
                self.exceeded.store(true, Ordering::Relaxed);
                return false;
            }
            match self.used.compare_exchange_weak(used, used + by, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn shrink(&self, by: u64) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(by)));
    }
}

/// A registered VFS of one connection's. Unregistered when dropped: drop it
/// after the connection that uses it.
pub struct Vfs {
    inner: Box<VfsBox>,
    name: String,
}

/// The VFS as SQLite sees it: the default VFS's methods, with `xOpen` ours.
#[repr(C)]
struct VfsBox {
    base: ffi::sqlite3_vfs,
    parent: *mut ffi::sqlite3_vfs,
    budget: Arc<TempBudget>,
    name: CString,
}

// SAFETY: SQLite calls the VFS from whichever thread uses the connection; the
// box holds only immutable pointers and an atomic budget.
unsafe impl Send for Vfs {}

/// A temporary file: our header, and the default VFS's file on the heap.
#[repr(C)]
struct TempFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    budget: *const TempBudget,
    size: u64,
}

const TEMP_FILES: c_int = ffi::SQLITE_OPEN_TEMP_DB
    | ffi::SQLITE_OPEN_TEMP_JOURNAL
    | ffi::SQLITE_OPEN_TRANSIENT_DB
    | ffi::SQLITE_OPEN_SUBJOURNAL;

impl Vfs {
    /// Registers a VFS that counts temporary files against `budget`.
    pub fn register(budget: Arc<TempBudget>) -> Result<Vfs> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("moat-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // SAFETY: finding the default VFS only reads SQLite's list.
        let parent = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if parent.is_null() {
            bail!("SQLite has no default VFS");
        }
        // SAFETY: `parent` is SQLite's default VFS, which lives as long as the process.
        let mut base = unsafe { *parent };
        let c_name = CString::new(name.clone())?;
        base.zName = c_name.as_ptr();
        base.pNext = std::ptr::null_mut();
        base.szOsFile = base.szOsFile.max(std::mem::size_of::<TempFile>() as c_int);
        base.xOpen = Some(open);
        let mut inner = Box::new(VfsBox { base, parent, budget, name: c_name });
        // SAFETY: the box is never moved while registered (it is unregistered
        // in `drop`), and its name lives in it.
        let rc = unsafe { ffi::sqlite3_vfs_register(&mut inner.base, 0) };
        if rc != ffi::SQLITE_OK {
            bail!("registering the VFS {name}: SQLite error {rc}");
        }
        Ok(Vfs { inner, name })
    }

    /// Its name, to open a connection with.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Vfs {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; every connection using it is closed.
        unsafe { ffi::sqlite3_vfs_unregister(&mut self.inner.base) };
        let _ = &self.inner.name;
    }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls this with the `base` of one of our `VfsBox`es
    // (repr(C), `base` first) and a `file` of `szOsFile` bytes.
    unsafe {
        let this = &*(vfs as *const VfsBox);
        let parent = this.parent;
        let parent_open = (*parent).xOpen.expect("the default VFS opens files");
        if flags & TEMP_FILES == 0 {
            return parent_open(parent, name, file, flags, out_flags);
        }
        let size = (*parent).szOsFile.max(1) as u64;
        let real = ffi::sqlite3_malloc64(size) as *mut ffi::sqlite3_file;
        if real.is_null() {
            (*file).pMethods = std::ptr::null();
            return ffi::SQLITE_NOMEM;
        }
        std::ptr::write_bytes(real as *mut u8, 0, size as usize);
        let rc = parent_open(parent, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            ffi::sqlite3_free(real as *mut _);
            (*file).pMethods = std::ptr::null();
            return rc;
        }
        let temp = file as *mut TempFile;
        (*temp).base.pMethods = &TEMP_METHODS;
        (*temp).real = real;
        (*temp).budget = Arc::as_ptr(&this.budget);
        (*temp).size = 0;
        ffi::SQLITE_OK
    }
}

static TEMP_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(temp_close),
    xRead: Some(temp_read),
    xWrite: Some(temp_write),
    xTruncate: Some(temp_truncate),
    xSync: Some(temp_sync),
    xFileSize: Some(temp_file_size),
    xLock: Some(temp_lock),
    xUnlock: Some(temp_unlock),
    xCheckReservedLock: Some(temp_check_reserved_lock),
    xFileControl: Some(temp_file_control),
    xSectorSize: Some(temp_sector_size),
    xDeviceCharacteristics: Some(temp_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The temp file behind `file`, and its methods.
///
/// # Safety
/// `file` is a file `open` set up as temporary.
unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (&'static mut TempFile, *mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, and the real file was opened successfully.
    unsafe {
        let temp = &mut *(file as *mut TempFile);
        let real = temp.real;
        (temp, real, &*(*real).pMethods)
    }
}

unsafe extern "C" fn temp_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see `real`; the budget outlives every file of its connection.
    unsafe {
        let (temp, inner, methods) = real(file);
        (*temp.budget).shrink(temp.size);
        temp.size = 0;
        let rc = methods.xClose.map_or(ffi::SQLITE_OK, |f| f(inner));
        ffi::sqlite3_free(inner as *mut _);
        rc
    }
}

unsafe extern "C" fn temp_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut std::ffi::c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |f| f(inner, buf, amt, off))
    }
}

unsafe extern "C" fn temp_write(
    file: *mut ffi::sqlite3_file,
    buf: *const std::ffi::c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: see `real`; the budget outlives every file of its connection.
    unsafe {
        let (temp, inner, methods) = real(file);
        let end = (off.max(0) as u64).saturating_add(amt.max(0) as u64);
        if end > temp.size {
            if !(*temp.budget).grow(end - temp.size) {
                return ffi::SQLITE_FULL;
            }
            temp.size = end;
        }
        methods.xWrite.map_or(ffi::SQLITE_IOERR_WRITE, |f| f(inner, buf, amt, off))
    }
}

unsafe extern "C" fn temp_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (temp, inner, methods) = real(file);
        let size = size.max(0) as u64;
        if size < temp.size {
            (*temp.budget).shrink(temp.size - size);
            temp.size = size;
        }
        methods.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |f| f(inner, size as i64))
    }
}

unsafe extern "C" fn temp_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xSync.map_or(ffi::SQLITE_OK, |f| f(inner, flags))
    }
}

unsafe extern "C" fn temp_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |f| f(inner, size))
    }
}

unsafe extern "C" fn temp_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xLock.map_or(ffi::SQLITE_OK, |f| f(inner, level))
    }
}

unsafe extern "C" fn temp_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xUnlock.map_or(ffi::SQLITE_OK, |f| f(inner, level))
    }
}

unsafe extern "C" fn temp_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xCheckReservedLock.map_or(ffi::SQLITE_OK, |f| f(inner, out))
    }
}

unsafe extern "C" fn temp_file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut std::ffi::c_void) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |f| f(inner, op, arg))
    }
}

unsafe extern "C" fn temp_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xSectorSize.map_or(4096, |f| f(inner))
    }
}

unsafe extern "C" fn temp_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see `real`.
    unsafe {
        let (_, inner, methods) = real(file);
        methods.xDeviceCharacteristics.map_or(0, |f| f(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_past_the_budget_fail_the_statement_and_free_their_share() {
        let budget = TempBudget::new(2 << 20);
        let vfs = Vfs::register(budget.clone()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = rusqlite::Connection::open_with_flags_and_vfs(
            dir.path().join("t.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
            vfs.name(),
        )
        .unwrap();
        c.pragma_update(None, "cache_size", 16).unwrap();
        let sort = "SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?1) SELECT randomblob(1000) AS x FROM c) ORDER BY x";
        // A sort that fits runs.
        c.query_row(sort, [500], |_| Ok(())).unwrap();
        assert_eq!(budget.used(), 0, "temporary files were not freed");
        // One that does not fails as a full disk, and says so.
        let err = c.query_row(sort, [50_000], |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert!(budget.take_exceeded());
        assert_eq!(budget.used(), 0, "temporary files were not freed after the failure");
        drop(c);
        drop(vfs);
    }
}
