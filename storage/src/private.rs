//! Files only their owner can read, whatever the umask.
//!
//! SQLite creates a database's `-wal` and `-shm` files with the mode of the
//! database file itself, so a database made (or found) 0600 keeps its
//! companions 0600 too; one made under a umask of 022 was 0644 with them,
//! and other local users could read its row counts and sizes. The lock
//! file holds nothing but is made private as well.

use std::{
    fs::{self, OpenOptions, Permissions},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::{Error, Result, sqlite::beside};

/// The only mode veil gives its files.
pub(crate) const MODE: u32 = 0o600;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Creates `path` empty with mode 0600 (exactly: the umask only removes
/// bits) and opens it for writing; it must not exist.
pub(crate) fn create_new(path: &Path) -> Result<fs::File> {
    let file = OpenOptions::new().write(true).create_new(true).mode(MODE).open(path).map_err(io(path))?;
    file.set_permissions(Permissions::from_mode(MODE)).map_err(io(path))?;
    Ok(file)
}

/// Opens (creating if needed) the file at `path` for writing, mode 0600.
pub(crate) fn open_or_create(path: &Path) -> Result<fs::File> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).mode(MODE).open(path).map_err(io(path))?;
    file.set_permissions(Permissions::from_mode(MODE)).map_err(io(path))?;
    Ok(file)
}

/// Makes the database at `path` and whichever of its `-wal` and `-shm`
/// files exist mode 0600, if they are not.
pub(crate) fn tighten_database(path: &Path) -> Result<()> {
    for file in [path.to_owned(), beside(path, "-wal"), beside(path, "-shm")] {
        match fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o777 != MODE => {
                fs::set_permissions(&file, Permissions::from_mode(MODE)).map_err(io(&file))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file)(e)),
        }
    }
    Ok(())
}
