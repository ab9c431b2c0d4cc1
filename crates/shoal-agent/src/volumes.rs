//! A pod's volumes on the node's disk: the directories a container runtime bind-mounts.
//!
//! Each volume lives at `<pod_dir>/volumes/<kind>/<volume name>`, except a hostPath, which is
//! its own path:
//! - `emptyDir`: a directory made once, mode 0777 so that any user of the pod's containers can
//!   write to it, and never touched again. `medium: Memory` is a plain directory too: no tmpfs,
//!   and `sizeLimit` is not enforced.
//! - `hostPath`: the path, checked (or created) as its `type` asks.
//! - `configMap`, `secret`, `downwardAPI` and `projected` (of those three): files written the
//!   way kubelet's AtomicWriter writes them, so that a running container sees either the old
//!   or the new contents, never a mix:
//!
//!   ```text
//!   <volume>/..2025_01_02_15_04_05.0/   the files, in a directory named for when it was written
//!   <volume>/..data -> ..2025_01_02_15_04_05.0
//!   <volume>/<key>  -> ..data/<key>       one link per top-level name
//!   ```
//!
//!   An update writes a new timestamped directory, links new names, replaces `..data` by
//!   rename(2) of a new link, then removes the links of vanished names and the old directory.
//!   Contents are compared first and nothing is written when they are unchanged, so the agent
//!   can call [`prepare_volumes`] periodically: that is what makes ConfigMap and Secret
//!   volumes follow their objects. A run interrupted anywhere is completed by the next one.
//!
//! Files are created 0600 and then given their mode (`items[].mode`, else `defaultMode`, else
//! 0644 as Kubernetes), so that a Secret is never readable by others while it is written.
//! Secrets are written to the disk under `pod_dir`; kubelet uses a tmpfs per volume, which an
//! agent can have by putting its pods' directories on one.
//!
//! Not here: fsGroup ownership and SELinux labels, serviceAccountToken and clusterTrustBundle
//! projections, and every network or cloud volume kind: those are errors naming the volume.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath, Pod, Secret,
    Volume, VolumeProjection,
};

use crate::pod_env::{ConfigSource, DownwardApiError, PodFacts, field_value, resource_value};

/// Kubernetes' limit on the data of one ConfigMap or Secret.
pub const OBJECT_BYTES_MAX: u64 = 1024 * 1024;
/// The most a volume may hold, paths and contents together: a projected volume may gather a
/// few objects, and this keeps a huge or hostile one from filling the node's disk.
pub const VOLUME_BYTES_MAX: u64 = 4 * OBJECT_BYTES_MAX;
/// The mode of a file whose volume names none: Kubernetes' default for every kind.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

const _: () = assert!(VOLUME_BYTES_MAX >= OBJECT_BYTES_MAX, "a volume holds at least one whole object");

/// What a file has while it is written, before it gets its own mode.
const WRITING_FILE_MODE: u32 = 0o600;
/// Data directories must let any user of the containers reach the files, whatever the umask.
const DATA_DIRECTORY_MODE: u32 = 0o755;
/// An emptyDir is writable by every user of the pod's containers.
const EMPTY_DIR_MODE: u32 = 0o777;
/// The modes a volume file may have, as API validation allows.
const FILE_MODE_MAX: i32 = 0o777;
/// Upstream AtomicWriter's limits on one path and one of its names.
const PATH_BYTES_MAX: usize = 4096;
const FILE_NAME_BYTES_MAX: usize = 255;
/// The link to the current data directory, and the new link renamed over it.
const DATA_LINK: &str = "..data";
const NEW_DATA_LINK: &str = "..data_tmp";
/// How many names a new data directory tries within one second before giving up.
const DATA_DIRECTORY_ATTEMPTS_MAX: u32 = 1000;

/// A volume ready to be mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedVolume {
    pub name: String,
    pub host_path: PathBuf,
    /// ConfigMap, Secret, downward API and projected volumes are mounted read-only, as
    /// Kubernetes mounts them; a mount's own `readOnly` is the caller's concern.
    pub read_only: bool,
}

/// A volume that could not be prepared. The message is the text of kubelet's FailedMount
/// Event, complete in itself: the failure is part of it rather than a `source`, so that the
/// pod worker can report `to_string()` alone.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {failure}")]
pub struct VolumeError {
    pub volume: String,
    pub failure: VolumeFailure,
}

/// What went wrong with one volume; the messages are kubelet's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum VolumeFailure {
    #[error("{kind} volumes are not supported")]
    UnsupportedKind { kind: &'static str },
    #[error("emptyDir medium {medium:?} is not supported")]
    UnsupportedMedium { medium: String },
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("configmap references non-existent config key: {key}")]
    ConfigMapKeyNotFound { key: String },
    #[error("references non-existent secret key: {key}")]
    SecretKeyNotFound { key: String },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid mode {mode:#o} of {path:?}: must be between 0 and 0777")]
    InvalidMode { path: String, mode: i32 },
    #[error("the volume's {bytes} bytes exceed the limit of {limit} bytes")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("hostPath type check failed: {} is not a {expected}", path.display())]
    HostPathType { path: PathBuf, expected: &'static str },
    #[error("{type_} is an invalid volume type")]
    InvalidHostPathType { type_: String },
    #[error(transparent)]
    DownwardApi(#[from] DownwardApiError),
    /// The I/O error is in the message, not a `source`: see [`VolumeError`].
    #[error("{operation} {}: {error}", path.display())]
    Io { operation: &'static str, path: PathBuf, error: io::Error },
}

/// Makes every volume of `pod` ready under `pod_dir`, in the pod's order, or fails on the
/// first that cannot be. Safe to call again at any time, and meant to be: unchanged contents
/// are left alone, changed ones are swapped in atomically. Calls for one pod must not overlap.
pub fn prepare_volumes(
    pod: &Pod,
    source: &impl ConfigSource,
    pod_dir: &Path,
    facts: &PodFacts,
) -> Result<Vec<PreparedVolume>, VolumeError> {
    let volumes = pod.spec.as_ref().and_then(|spec| spec.volumes.as_deref()).unwrap_or_default();
    volumes
        .iter()
        .map(|volume| {
            prepare_volume(pod, volume, source, pod_dir, facts)
                .map_err(|failure| VolumeError { volume: volume.name.clone(), failure })
        })
        .collect()
}

/// The files of a volume by their relative path: what AtomicWriter calls a payload.
type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, PartialEq, Eq)]
struct FileProjection {
    data: Vec<u8>,
    mode: u32,
}

fn prepare_volume(
    pod: &Pod,
    volume: &Volume,
    source: &impl ConfigSource,
    pod_dir: &Path,
    facts: &PodFacts,
) -> Result<PreparedVolume, VolumeFailure> {
    // The name becomes a directory: it must be one name, whatever validation let through.
    if clean_path(&volume.name)? != volume.name || volume.name.contains('/') {
        return Err(VolumeFailure::InvalidPath {
            path: volume.name.clone(),
            reason: "must be a single name",
        });
    }
    let directory = |kind: &str| pod_dir.join("volumes").join(kind).join(&volume.name);
    let prepared = |host_path, read_only| PreparedVolume { name: volume.name.clone(), host_path, read_only };
    if let Some(host_path) = &volume.host_path {
        return Ok(prepared(prepare_host_path(host_path)?, false));
    }
    if let Some(empty_dir) = &volume.empty_dir {
        let path = directory("empty-dir");
        prepare_empty_dir(&path, empty_dir)?;
        return Ok(prepared(path, false));
    }
    if source_kind(volume).is_none() {
        // The API server defaults a volume without a source to an emptyDir.
        let path = directory("empty-dir");
        prepare_empty_dir(&path, &EmptyDirVolumeSource::default())?;
        return Ok(prepared(path, false));
    }
    let (kind_directory, payload) = files_of(pod, volume, source, facts)?;
    let path = directory(kind_directory);
    write_atomically(&path, &payload)?;
    Ok(prepared(path, true))
}

/// The files of a ConfigMap, Secret, downward API or projected volume, with the name of the
/// directory of its kind; any other kind is unsupported.
fn files_of(
    pod: &Pod,
    volume: &Volume,
    source: &impl ConfigSource,
    facts: &PodFacts,
) -> Result<(&'static str, Payload), VolumeFailure> {
    let mut payload = Payload::new();
    let kind_directory = if let Some(config_map) = &volume.config_map {
        let default_mode = file_mode(config_map.default_mode, DEFAULT_FILE_MODE, "defaultMode")?;
        let object = source.config_map(&config_map.name);
        let items = config_map.items.as_deref();
        add_config_map(&mut payload, &config_map.name, object, items, default_mode, config_map.optional)?;
        "config-map"
    } else if let Some(secret) = &volume.secret {
        let default_mode = file_mode(secret.default_mode, DEFAULT_FILE_MODE, "defaultMode")?;
        let name = secret.secret_name.as_deref().unwrap_or_default();
        let items = secret.items.as_deref();
        add_secret(&mut payload, name, source.secret(name), items, default_mode, secret.optional)?;
        "secret"
    } else if let Some(downward_api) = &volume.downward_api {
        let default_mode = file_mode(downward_api.default_mode, DEFAULT_FILE_MODE, "defaultMode")?;
        let items = downward_api.items.as_deref().unwrap_or_default();
        add_downward_api(&mut payload, pod, facts, items, default_mode)?;
        "downward-api"
    } else if let Some(projected) = &volume.projected {
        let default_mode = file_mode(projected.default_mode, DEFAULT_FILE_MODE, "defaultMode")?;
        for projection in projected.sources.iter().flatten() {
            add_projection(&mut payload, pod, source, facts, projection, default_mode)?;
        }
        "projected"
    } else {
        let kind = source_kind(volume).expect("a volume without a source is an emptyDir");
        return Err(VolumeFailure::UnsupportedKind { kind });
    };
    Ok((kind_directory, payload))
}

/// The files of one source of a projected volume.
fn add_projection(
    payload: &mut Payload,
    pod: &Pod,
    source: &impl ConfigSource,
    facts: &PodFacts,
    projection: &VolumeProjection,
    default_mode: u32,
) -> Result<(), VolumeFailure> {
    if let Some(config_map) = &projection.config_map {
        let object = source.config_map(&config_map.name);
        let items = config_map.items.as_deref();
        add_config_map(payload, &config_map.name, object, items, default_mode, config_map.optional)
    } else if let Some(secret) = &projection.secret {
        let items = secret.items.as_deref();
        add_secret(payload, &secret.name, source.secret(&secret.name), items, default_mode, secret.optional)
    } else if let Some(downward_api) = &projection.downward_api {
        let items = downward_api.items.as_deref().unwrap_or_default();
        add_downward_api(payload, pod, facts, items, default_mode)
    } else if projection.service_account_token.is_some() {
        Err(VolumeFailure::UnsupportedKind { kind: "projected serviceAccountToken" })
    } else if projection.cluster_trust_bundle.is_some() {
        Err(VolumeFailure::UnsupportedKind { kind: "projected clusterTrustBundle" })
    } else {
        Ok(())
    }
}

/// The name of the source a volume has, as the API spells it, or `None` for none.
fn source_kind(volume: &Volume) -> Option<&'static str> {
    let kinds = [
        ("awsElasticBlockStore", volume.aws_elastic_block_store.is_some()),
        ("azureDisk", volume.azure_disk.is_some()),
        ("azureFile", volume.azure_file.is_some()),
        ("cephfs", volume.cephfs.is_some()),
        ("cinder", volume.cinder.is_some()),
        ("configMap", volume.config_map.is_some()),
        ("csi", volume.csi.is_some()),
        ("downwardAPI", volume.downward_api.is_some()),
        ("emptyDir", volume.empty_dir.is_some()),
        ("ephemeral", volume.ephemeral.is_some()),
        ("fc", volume.fc.is_some()),
        ("flexVolume", volume.flex_volume.is_some()),
        ("flocker", volume.flocker.is_some()),
        ("gcePersistentDisk", volume.gce_persistent_disk.is_some()),
        ("gitRepo", volume.git_repo.is_some()),
        ("glusterfs", volume.glusterfs.is_some()),
        ("hostPath", volume.host_path.is_some()),
        ("image", volume.image.is_some()),
        ("iscsi", volume.iscsi.is_some()),
        ("nfs", volume.nfs.is_some()),
        ("persistentVolumeClaim", volume.persistent_volume_claim.is_some()),
        ("photonPersistentDisk", volume.photon_persistent_disk.is_some()),
        ("portworxVolume", volume.portworx_volume.is_some()),
        ("projected", volume.projected.is_some()),
        ("quobyte", volume.quobyte.is_some()),
        ("rbd", volume.rbd.is_some()),
        ("scaleIO", volume.scale_io.is_some()),
        ("secret", volume.secret.is_some()),
        ("storageos", volume.storageos.is_some()),
        ("vsphereVolume", volume.vsphere_volume.is_some()),
    ];
    kinds.into_iter().find_map(|(kind, set)| set.then_some(kind))
}

fn prepare_empty_dir(path: &Path, source: &EmptyDirVolumeSource) -> Result<(), VolumeFailure> {
    match source.medium.as_deref().unwrap_or_default() {
        "" | "Memory" => {}
        medium => return Err(VolumeFailure::UnsupportedMedium { medium: medium.to_owned() }),
    }
    match fs::symlink_metadata(path) {
        // Made by an earlier call: what is in it is the pod's.
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(io_failure("prepare", path, io::Error::from(io::ErrorKind::NotADirectory))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path).map_err(|error| io_failure("create", path, error))?;
            set_mode(path, EMPTY_DIR_MODE)
        }
        Err(error) => Err(io_failure("inspect", path, error)),
    }
}

/// The hostPath's path, after the check (or creation) its `type` asks for, as kubelet's
/// `checkTypeInternal`. Paths are followed through symlinks, as there.
fn prepare_host_path(source: &HostPathVolumeSource) -> Result<PathBuf, VolumeFailure> {
    let path = PathBuf::from(&source.path);
    let invalid = |reason| VolumeFailure::InvalidPath { path: source.path.clone(), reason };
    if !path.is_absolute() {
        return Err(invalid("must be an absolute path"));
    }
    if path.components().any(|component| component == Component::ParentDir) {
        return Err(invalid("must not contain '..'"));
    }
    let exists = fs::metadata(&path).is_ok();
    let type_ = source.type_.as_deref().unwrap_or_default();
    let (expected, is_expected): (&'static str, fn(&fs::FileType) -> bool) = match type_ {
        "" => return Ok(path),
        "DirectoryOrCreate" | "Directory" => ("directory", fs::FileType::is_dir),
        "FileOrCreate" | "File" => ("file", fs::FileType::is_file),
        "Socket" => ("socket file", |file_type| file_type.is_socket()),
        "CharDevice" => ("character device", |file_type| file_type.is_char_device()),
        "BlockDevice" => ("block device", |file_type| file_type.is_block_device()),
        _ => return Err(VolumeFailure::InvalidHostPathType { type_: type_.to_owned() }),
    };
    if !exists && type_ == "DirectoryOrCreate" {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o755);
        builder.create(&path).map_err(|error| io_failure("create", &path, error))?;
    }
    if !exists && type_ == "FileOrCreate" {
        // Like kubelet, the file is made but not its parent directories.
        let created = fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(&path);
        created.map_err(|error| io_failure("create", &path, error))?;
    }
    match fs::metadata(&path) {
        Ok(metadata) if is_expected(&metadata.file_type()) => Ok(path),
        _ => Err(VolumeFailure::HostPathType { path, expected }),
    }
}

/// The files of a ConfigMap, as kubelet's configMap volume: every key of `data` and
/// `binaryData` at `default_mode` without items, else each item's key at its path. A missing
/// optional ConfigMap is an empty one; a missing key of an optional one is left out.
fn add_config_map(
    payload: &mut Payload,
    name: &str,
    config_map: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: Option<bool>,
) -> Result<(), VolumeFailure> {
    let optional = optional == Some(true);
    if config_map.is_none() && !optional {
        return Err(VolumeFailure::ConfigMapNotFound { name: name.to_owned() });
    }
    let mut data: BTreeMap<&str, &[u8]> = BTreeMap::new();
    if let Some(config_map) = config_map {
        for (key, value) in config_map.binary_data.iter().flatten() {
            data.insert(key, &value.0);
        }
        // A key in both is read from `data`, as upstream looks there first.
        for (key, value) in config_map.data.iter().flatten() {
            data.insert(key, value.as_bytes());
        }
    }
    add_keys(payload, &data, items, default_mode, optional, |key| VolumeFailure::ConfigMapKeyNotFound { key })
}

/// The files of a Secret, as [`add_config_map`] for a ConfigMap.
fn add_secret(
    payload: &mut Payload,
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: Option<bool>,
) -> Result<(), VolumeFailure> {
    let optional = optional == Some(true);
    if secret.is_none() && !optional {
        return Err(VolumeFailure::SecretNotFound { name: name.to_owned() });
    }
    let data: BTreeMap<&str, &[u8]> = secret
        .into_iter()
        .flat_map(|secret| secret.data.iter().flatten())
        .map(|(key, value)| (key.as_str(), &value.0[..]))
        .collect();
    add_keys(payload, &data, items, default_mode, optional, |key| VolumeFailure::SecretKeyNotFound { key })
}

fn add_keys(
    payload: &mut Payload,
    data: &BTreeMap<&str, &[u8]>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(String) -> VolumeFailure,
) -> Result<(), VolumeFailure> {
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        for (key, value) in data {
            add_file(payload, key, value.to_vec(), default_mode)?;
        }
        return Ok(());
    };
    for item in items {
        let Some(value) = data.get(item.key.as_str()) else {
            if optional {
                continue;
            }
            return Err(missing(item.key.clone()));
        };
        let mode = file_mode(item.mode, default_mode, &item.path)?;
        add_file(payload, &item.path, value.to_vec(), mode)?;
    }
    Ok(())
}

fn add_downward_api(
    payload: &mut Payload,
    pod: &Pod,
    facts: &PodFacts,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<(), VolumeFailure> {
    for item in items {
        let value = if let Some(selector) = &item.field_ref {
            field_value(pod, facts, selector)?
        } else if let Some(selector) = &item.resource_field_ref {
            // A volume belongs to no container: the selector must name one.
            resource_value(pod, None, facts, selector)?
        } else {
            String::new()
        };
        let mode = file_mode(item.mode, default_mode, &item.path)?;
        add_file(payload, &item.path, value.into_bytes(), mode)?;
    }
    Ok(())
}

fn add_file(payload: &mut Payload, path: &str, data: Vec<u8>, mode: u32) -> Result<(), VolumeFailure> {
    payload.insert(clean_path(path)?, FileProjection { data, mode });
    Ok(())
}

fn file_mode(mode: Option<i32>, default: u32, path: &str) -> Result<u32, VolumeFailure> {
    match mode {
        None => Ok(default),
        Some(mode @ 0..=FILE_MODE_MAX) => Ok(mode.unsigned_abs()),
        Some(mode) => Err(VolumeFailure::InvalidMode { path: path.to_owned(), mode }),
    }
}

/// `path` cleaned (empty and `.` names dropped) once it passes upstream AtomicWriter's
/// checks: relative, no `..` name, not starting with `..` (names kept for `..data` and the
/// data directories), no name longer than 255 bytes nor path longer than 4096.
fn clean_path(path: &str) -> Result<String, VolumeFailure> {
    let invalid = |reason| VolumeFailure::InvalidPath { path: path.to_owned(), reason };
    if path.starts_with('/') {
        return Err(invalid("must be a relative path"));
    }
    if path.len() > PATH_BYTES_MAX {
        return Err(invalid("must be at most 4096 bytes"));
    }
    if path.contains('\0') {
        return Err(invalid("must not contain a NUL byte"));
    }
    let names: Vec<&str> = path.split('/').filter(|name| !name.is_empty() && *name != ".").collect();
    if names.contains(&"..") {
        return Err(invalid("must not contain '..'"));
    }
    if names.iter().any(|name| name.len() > FILE_NAME_BYTES_MAX) {
        return Err(invalid("file names must be at most 255 bytes"));
    }
    match names.first() {
        None => Err(invalid("must name a file")),
        Some(first) if first.starts_with("..") => Err(invalid("must not start with '..'")),
        Some(_) => Ok(names.join("/")),
    }
}

/// Makes `target` hold exactly `payload`, as upstream's `AtomicWriter.Write`, and finishes
/// what an interrupted earlier call left. Returns whether the contents changed.
fn write_atomically(target: &Path, payload: &Payload) -> Result<bool, VolumeFailure> {
    let bytes: u64 = payload.iter().map(|(path, file)| (path.len() + file.data.len()) as u64).sum();
    if bytes > VOLUME_BYTES_MAX {
        return Err(VolumeFailure::TooLarge { bytes, limit: VOLUME_BYTES_MAX });
    }
    fs::create_dir_all(target).map_err(|error| io_failure("create", target, error))?;
    let current = current_data_directory(target)?;
    let unchanged = match &current {
        Some(directory) => holds_payload(&target.join(directory), payload)?,
        None => false,
    };
    let data_directory = match current {
        Some(directory) if unchanged => directory,
        _ => {
            let directory = new_data_directory(target)?;
            if let Err(failure) = write_payload(&target.join(&directory), payload) {
                // Best effort: a later call removes it anyway.
                let _ = fs::remove_dir_all(target.join(&directory));
                return Err(failure);
            }
            directory
        }
    };
    link_visible_names(target, payload)?;
    if !unchanged {
        let new_link = target.join(NEW_DATA_LINK);
        remove_if_present(&new_link)?;
        std::os::unix::fs::symlink(&data_directory, &new_link)
            .map_err(|error| io_failure("link", &new_link, error))?;
        let link = target.join(DATA_LINK);
        fs::rename(&new_link, &link).map_err(|error| io_failure("rename", &link, error))?;
    }
    remove_stale_entries(target, payload, &data_directory)?;
    Ok(!unchanged)
}

/// The data directory `..data` names, if it names one of ours.
fn current_data_directory(target: &Path) -> Result<Option<String>, VolumeFailure> {
    let link = target.join(DATA_LINK);
    match fs::read_link(&link) {
        Ok(destination) => {
            let name = destination.to_str().filter(|name| name.starts_with("..") && !name.contains('/'));
            // Anything else was not made here: it is replaced.
            Ok(name.map(str::to_owned))
        }
        Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => {
            Ok(None)
        }
        Err(error) => Err(io_failure("read", &link, error)),
    }
}

/// Whether `directory` holds exactly the files of `payload`, with their contents and modes.
fn holds_payload(directory: &Path, payload: &Payload) -> Result<bool, VolumeFailure> {
    let mut files = Vec::new();
    if !list_files(directory, "", &mut files)? || files.len() != payload.len() {
        return Ok(false);
    }
    for (path, mode) in files {
        let Some(file) = payload.get(&path) else { return Ok(false) };
        if mode != file.mode {
            return Ok(false);
        }
        let full_path = directory.join(&path);
        let data = fs::read(&full_path).map_err(|error| io_failure("read", &full_path, error))?;
        if data != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds the regular files under `directory` to `files` with their modes; false when it holds
/// anything else or does not exist.
fn list_files(directory: &Path, prefix: &str, files: &mut Vec<(String, u32)>) -> Result<bool, VolumeFailure> {
    let entries = match fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(io_failure("list", directory, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| io_failure("list", directory, error))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { return Ok(false) };
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let metadata = entry.metadata().map_err(|error| io_failure("inspect", &entry.path(), error))?;
        if metadata.is_dir() {
            if !list_files(&entry.path(), &path, files)? {
                return Ok(false);
            }
        } else if metadata.is_file() {
            files.push((path, metadata.permissions().mode() & 0o7777));
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A new, empty data directory in `target`, named for the time it was made.
fn new_data_directory(target: &Path) -> Result<String, VolumeFailure> {
    // The name only has to be unique and tell a person when it was written; nothing reads
    // the time back, so the ambient clock does no harm to determinism here.
    let time = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S").to_string();
    for attempt in 0..DATA_DIRECTORY_ATTEMPTS_MAX {
        let name = format!("..{time}.{attempt}");
        let path = target.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                set_mode(&path, DATA_DIRECTORY_MODE)?;
                return Ok(name);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(io_failure("create", &path, error)),
        }
    }
    Err(io_failure("create a data directory in", target, io::Error::from(io::ErrorKind::AlreadyExists)))
}

fn write_payload(directory: &Path, payload: &Payload) -> Result<(), VolumeFailure> {
    for (path, file) in payload {
        let full_path = directory.join(path);
        let parent = full_path.parent().expect("a payload path names a file in the directory");
        if parent != directory {
            fs::create_dir_all(parent).map_err(|error| io_failure("create", parent, error))?;
            for ancestor in parent.ancestors().take_while(|ancestor| *ancestor != directory) {
                set_mode(ancestor, DATA_DIRECTORY_MODE)?;
            }
        }
        let write = || -> io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true).mode(WRITING_FILE_MODE);
            options.open(&full_path)?.write_all(&file.data)
        };
        write().map_err(|error| io_failure("write", &full_path, error))?;
        set_mode(&full_path, file.mode)?;
    }
    Ok(())
}

/// Links each top-level name of `payload` into `..data`, where it is not linked yet.
fn link_visible_names(target: &Path, payload: &Payload) -> Result<(), VolumeFailure> {
    for name in top_level_names(payload) {
        let link = target.join(name);
        match fs::symlink_metadata(&link) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let destination = Path::new(DATA_LINK).join(name);
                std::os::unix::fs::symlink(&destination, &link)
                    .map_err(|error| io_failure("link", &link, error))?;
            }
            Err(error) => return Err(io_failure("inspect", &link, error)),
        }
    }
    Ok(())
}

/// Removes the links of names no longer in `payload`, and every `..` entry but `..data` and
/// the current data directory: old data directories and links of interrupted calls.
fn remove_stale_entries(target: &Path, payload: &Payload, data_directory: &str) -> Result<(), VolumeFailure> {
    let names = top_level_names(payload);
    let entries = fs::read_dir(target).map_err(|error| io_failure("list", target, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_failure("list", target, error))?;
        let file_name = entry.file_name();
        let name = file_name.to_string_lossy();
        let file_type = entry.file_type().map_err(|error| io_failure("inspect", &entry.path(), error))?;
        let stale = if name.starts_with("..") {
            name != DATA_LINK && name != data_directory
        } else {
            // Only links are ever made beside the data: anything else is left alone.
            file_type.is_symlink() && !names.contains(name.as_ref())
        };
        if !stale {
            continue;
        }
        let path = entry.path();
        let removed = if file_type.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(|error| io_failure("remove", &path, error))?;
    }
    Ok(())
}

fn top_level_names(payload: &Payload) -> BTreeSet<&str> {
    payload.keys().map(|path| path.split('/').next().expect("split yields at least one name")).collect()
}

fn remove_if_present(path: &Path) -> Result<(), VolumeFailure> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_failure("remove", path, error)),
        _ => Ok(()),
    }
}

/// Gives `path` exactly `mode`, whatever the process' umask.
fn set_mode(path: &Path, mode: u32) -> Result<(), VolumeFailure> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| io_failure("chmod", path, error))
}

fn io_failure(operation: &'static str, path: &Path, error: io::Error) -> VolumeFailure {
    VolumeFailure::Io { operation, path: path.to_owned(), error }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use k8s_openapi::ByteString;
    use serde_json::{Value, json};

    use super::*;
    use crate::pod_env::tests::{Objects, pod_with, with_facts};

    fn objects() -> Objects {
        let mut objects = Objects::default()
            .with_config_map("app-config", &[("LOG_LEVEL", "debug"), ("PORT", "8080")])
            .with_secret("db", &[("password", b"hunter2"), ("raw", &[0xff, 0x00])]);
        let logo = ByteString(vec![0x89, b'P', b'N', b'G']);
        let config_map = objects.config_maps.get_mut("app-config").unwrap();
        config_map.binary_data = Some([("logo.png".to_owned(), logo)].into());
        objects
    }

    /// Prepares the volumes `volumes` of the pod `web` against `objects` under `pod_dir`;
    /// an error as its message.
    fn prepare(volumes: Value, objects: &Objects, pod_dir: &Path) -> Result<Vec<PreparedVolume>, String> {
        let mut pod = pod_with(json!({}));
        pod.spec.as_mut().unwrap().volumes = Some(serde_json::from_value(volumes).unwrap());
        with_facts(&[], |facts| prepare_volumes(&pod, objects, pod_dir, facts))
            .map_err(|error| error.to_string())
    }

    /// Prepares the single volume `v` and returns its directory.
    fn prepare_one(volume: Value, objects: &Objects, pod_dir: &Path) -> Result<PathBuf, String> {
        let mut volume = volume;
        volume["name"] = json!("v");
        let prepared = prepare(json!([volume]), objects, pod_dir)?;
        Ok(prepared[0].host_path.clone())
    }

    /// The names in `directory`, sorted.
    fn entries(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Every file a container would see in `directory` (through the links), with its
    /// contents and mode, sorted by path.
    fn visible_files(directory: &Path) -> Vec<(String, String, u32)> {
        let mut files = Vec::new();
        let mut pending = vec![(directory.to_owned(), String::new())];
        while let Some((directory, prefix)) = pending.pop() {
            for name in entries(&directory).into_iter().filter(|name| !name.starts_with("..")) {
                let path = directory.join(&name);
                let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                let metadata = fs::metadata(&path).unwrap();
                if metadata.is_dir() {
                    pending.push((path, relative));
                } else {
                    let contents = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                    files.push((relative, contents, metadata.permissions().mode() & 0o7777));
                }
            }
        }
        files.sort();
        files
    }

    fn files(files: &[(&str, &str, u32)]) -> Vec<(String, String, u32)> {
        files.iter().map(|(path, contents, mode)| (path.to_string(), contents.to_string(), *mode)).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn data_directory(volume: &Path) -> String {
        fs::read_link(volume.join(DATA_LINK)).unwrap().into_os_string().into_string().unwrap()
    }

    #[test]
    fn empty_dirs_are_made_once() {
        // emptyDirs (Memory ones and volumes without a source too) are world-writable
        // directories under the pod's directory; a second call keeps what the pod wrote.
        let root = tempfile::tempdir().unwrap();
        let volumes = json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}},
            {"name": "bare"},
        ]);
        let prepared = prepare(volumes.clone(), &objects(), root.path()).unwrap();
        let expected: Vec<PreparedVolume> = ["scratch", "cache", "bare"]
            .into_iter()
            .map(|name| PreparedVolume {
                name: name.to_owned(),
                host_path: root.path().join("volumes/empty-dir").join(name),
                read_only: false,
            })
            .collect();
        assert_eq!(prepared, expected);
        assert!(prepared.iter().all(|volume| mode(&volume.host_path) == 0o777));
        fs::write(prepared[0].host_path.join("state"), "kept").unwrap();
        prepare(volumes, &objects(), root.path()).unwrap();
        assert_eq!(fs::read_to_string(prepared[0].host_path.join("state")).unwrap(), "kept");
        let huge = prepare_one(json!({"emptyDir": {"medium": "HugePages"}}), &objects(), root.path());
        assert_eq!(
            huge,
            Err("MountVolume.SetUp failed for volume \"v\" : emptyDir medium \"HugePages\" is not supported"
                .into())
        );
    }

    #[test]
    fn host_path_types() {
        // Each hostPath type against what is at the path: checked as kubelet checks, the
        // "OrCreate" types making what is missing; the path is the volume, writable.
        let root = tempfile::tempdir().unwrap();
        let at = |name: &str| root.path().join(name).to_str().unwrap().to_owned();
        fs::create_dir(at("dir")).unwrap();
        fs::write(at("file"), "x").unwrap();
        let _socket = UnixListener::bind(at("socket")).unwrap();
        let not_a =
            |name: &str, what: &str| Err(format!("hostPath type check failed: {} is not a {what}", at(name)));
        let cases = [
            ("", at("missing"), Ok(())),
            ("Directory", at("dir"), Ok(())),
            ("Directory", at("file"), not_a("file", "directory")),
            ("Directory", at("missing"), not_a("missing", "directory")),
            ("DirectoryOrCreate", at("made/nested"), Ok(())),
            ("DirectoryOrCreate", at("file"), not_a("file", "directory")),
            ("File", at("file"), Ok(())),
            ("File", at("dir"), not_a("dir", "file")),
            ("FileOrCreate", at("made-file"), Ok(())),
            ("FileOrCreate", at("dir"), not_a("dir", "file")),
            ("Socket", at("socket"), Ok(())),
            ("Socket", at("file"), not_a("file", "socket file")),
            ("CharDevice", "/dev/null".to_owned(), Ok(())),
            (
                "BlockDevice",
                "/dev/null".to_owned(),
                Err("hostPath type check failed: /dev/null is not a block device".into()),
            ),
            ("Pipe", at("file"), Err("Pipe is an invalid volume type".into())),
            (
                "",
                "relative/path".to_owned(),
                Err("invalid path \"relative/path\": must be an absolute path".into()),
            ),
            (
                "",
                format!("{}/../etc", at("dir")),
                Err(format!("invalid path \"{}/../etc\": must not contain '..'", at("dir"))),
            ),
        ];
        for (type_, path, expected) in cases {
            let volume = json!({"name": "v", "hostPath": {"path": path, "type": type_}});
            let result = prepare(json!([volume]), &objects(), &root.path().join("pod"));
            let expected = expected
                .map(|()| {
                    vec![PreparedVolume {
                        name: "v".into(),
                        host_path: path.clone().into(),
                        read_only: false,
                    }]
                })
                .map_err(|message: String| format!("MountVolume.SetUp failed for volume \"v\" : {message}"));
            assert_eq!(result, expected, "{type_} {path}");
        }
        assert!(fs::metadata(at("made/nested")).unwrap().is_dir());
        assert!(fs::metadata(at("made-file")).unwrap().is_file());
    }

    #[test]
    fn config_map_volume_layout() {
        // A ConfigMap volume is read-only; every key of data and binaryData is a link to
        // `..data/<key>`, `..data` a link to the timestamped directory holding the files.
        let root = tempfile::tempdir().unwrap();
        let volume =
            prepare_one(json!({"configMap": {"name": "app-config"}}), &objects(), root.path()).unwrap();
        assert_eq!(volume, root.path().join("volumes/config-map/v"));
        let data = data_directory(&volume);
        assert!(data.starts_with("..") && fs::metadata(volume.join(&data)).unwrap().is_dir(), "{data}");
        assert_eq!(entries(&volume), [data.as_str(), "..data", "LOG_LEVEL", "PORT", "logo.png"]);
        assert_eq!(fs::read_link(volume.join("PORT")).unwrap(), Path::new("..data/PORT"));
        assert_eq!(entries(&volume.join(&data)), ["LOG_LEVEL", "PORT", "logo.png"]);
        assert_eq!(mode(&volume.join(&data)), 0o755);
        let expected = files(&[
            ("LOG_LEVEL", "debug", 0o644),
            ("PORT", "8080", 0o644),
            ("logo.png", "\u{fffd}PNG", 0o644),
        ]);
        assert_eq!(visible_files(&volume), expected);
        let prepared =
            prepare(json!([{"name": "v", "configMap": {"name": "app-config"}}]), &objects(), root.path());
        assert!(prepared.unwrap()[0].read_only);
    }

    #[test]
    fn items_and_modes() {
        // items pick keys, place them at (cleaned, possibly nested) paths and may set their
        // mode; defaultMode covers the rest; Secrets and ConfigMaps alike.
        let cases = [
            (
                json!({"configMap": {"name": "app-config", "defaultMode": 0o640, "items": [
                    {"key": "LOG_LEVEL", "path": "./conf//level", "mode": 0o400},
                    {"key": "PORT", "path": "port"},
                ]}}),
                files(&[("conf/level", "debug", 0o400), ("port", "8080", 0o640)]),
            ),
            (
                json!({"secret": {"secretName": "db"}}),
                files(&[("password", "hunter2", 0o644), ("raw", "\u{fffd}\0", 0o644)]),
            ),
            (
                json!({"secret": {"secretName": "db", "defaultMode": 0o600, "items": [
                    {"key": "password", "path": "pw"},
                    {"key": "password", "path": "shared/pw", "mode": 0o440},
                ]}}),
                files(&[("pw", "hunter2", 0o600), ("shared/pw", "hunter2", 0o440)]),
            ),
            (
                json!({"secret": {"secretName": "db", "defaultMode": 0}}),
                files(&[("password", "hunter2", 0), ("raw", "\u{fffd}\0", 0)]),
            ),
        ];
        for (volume, expected) in cases {
            let root = tempfile::tempdir().unwrap();
            let directory = prepare_one(volume.clone(), &objects(), root.path()).unwrap();
            // Mode 0 files cannot be read back as a test user; check their modes only.
            if expected.iter().any(|(_, _, mode)| *mode == 0) {
                let data = directory.join(data_directory(&directory));
                assert!(expected.iter().all(|(path, _, _)| mode(&data.join(path)) == 0), "{volume}");
                continue;
            }
            assert_eq!(visible_files(&directory), expected, "{volume}");
        }
        let root = tempfile::tempdir().unwrap();
        let invalid = prepare_one(
            json!({"secret": {"secretName": "db", "defaultMode": 0o1777}}),
            &objects(),
            root.path(),
        );
        assert_eq!(invalid, Err("MountVolume.SetUp failed for volume \"v\" : invalid mode 0o1777 of \"defaultMode\": must be between 0 and 0777".into()));
    }

    #[test]
    fn missing_objects_and_keys() {
        // A missing object or item key fails the volume with kubelet's message unless the
        // volume is optional, which makes a missing object empty and leaves missing keys out.
        let cases = [
            (json!({"configMap": {"name": "gone"}}), Err("configmap \"gone\" not found")),
            (json!({"configMap": {"name": "gone", "optional": true}}), Ok(vec![])),
            (
                json!({"configMap": {"name": "app-config", "items": [{"key": "NOPE", "path": "n"}]}}),
                Err("configmap references non-existent config key: NOPE"),
            ),
            (
                json!({"configMap": {"name": "app-config", "optional": true, "items": [
                    {"key": "NOPE", "path": "n"}, {"key": "PORT", "path": "p"},
                ]}}),
                Ok(vec!["p"]),
            ),
            (json!({"secret": {"secretName": "gone"}}), Err("secret \"gone\" not found")),
            (json!({"secret": {"secretName": "gone", "optional": true}}), Ok(vec![])),
            (
                json!({"secret": {"secretName": "db", "items": [{"key": "NOPE", "path": "n"}]}}),
                Err("references non-existent secret key: NOPE"),
            ),
        ];
        for (volume, expected) in cases {
            let root = tempfile::tempdir().unwrap();
            let result = prepare_one(volume.clone(), &objects(), root.path()).map(|directory| {
                entries(&directory).into_iter().filter(|name| !name.starts_with("..")).collect::<Vec<_>>()
            });
            let expected = expected
                .map(|names| names.into_iter().map(str::to_owned).collect())
                .map_err(|message| format!("MountVolume.SetUp failed for volume \"v\" : {message}"));
            assert_eq!(result, expected, "{volume}");
        }
    }

    #[test]
    fn updates_are_atomic_and_only_when_needed() {
        // Unchanged contents are not rewritten; changed ones get a new data directory swapped
        // in through `..data`, the old one and the links of removed keys gone; a mode change
        // is a change; leftovers of an interrupted call are cleaned up.
        let root = tempfile::tempdir().unwrap();
        let volume = json!({"configMap": {"name": "settings"}});
        let before = Objects::default().with_config_map("settings", &[("a", "1"), ("b", "2")]);
        let directory = prepare_one(volume.clone(), &before, root.path()).unwrap();
        let first = data_directory(&directory);
        prepare_one(volume.clone(), &before, root.path()).unwrap();
        assert_eq!(data_directory(&directory), first, "unchanged contents are not rewritten");

        let after = Objects::default().with_config_map("settings", &[("a", "10"), ("c", "3")]);
        prepare_one(volume.clone(), &after, root.path()).unwrap();
        let second = data_directory(&directory);
        assert_ne!(second, first);
        assert_eq!(entries(&directory), [second.as_str(), "..data", "a", "c"]);
        assert_eq!(visible_files(&directory), files(&[("a", "10", 0o644), ("c", "3", 0o644)]));

        let stricter = json!({"configMap": {"name": "settings", "defaultMode": 0o600}});
        prepare_one(stricter.clone(), &after, root.path()).unwrap();
        let third = data_directory(&directory);
        assert_ne!(third, second);
        assert_eq!(visible_files(&directory), files(&[("a", "10", 0o600), ("c", "3", 0o600)]));

        // An interrupted earlier call: a new link not renamed, an old data directory, a link
        // of a removed key.
        std::os::unix::fs::symlink("..2000_01_01_00_00_00.0", directory.join(NEW_DATA_LINK)).unwrap();
        fs::create_dir(directory.join("..2000_01_01_00_00_00.0")).unwrap();
        std::os::unix::fs::symlink("..data/gone", directory.join("gone")).unwrap();
        prepare_one(stricter, &after, root.path()).unwrap();
        assert_eq!(entries(&directory), [third.as_str(), "..data", "a", "c"]);
    }

    #[test]
    fn paths_cannot_escape_the_volume() {
        // Item paths and volume names that are absolute, climb with '..', use the names kept
        // for the writer, or are too long are refused before anything is written.
        let long_name = "x".repeat(FILE_NAME_BYTES_MAX + 1);
        let cases = [
            ("../escape", "must not contain '..'"),
            ("a/../../escape", "must not contain '..'"),
            ("/etc/passwd", "must be a relative path"),
            ("..data", "must not start with '..'"),
            ("..hidden/file", "must not start with '..'"),
            ("", "must name a file"),
            ("./", "must name a file"),
            (long_name.as_str(), "file names must be at most 255 bytes"),
        ];
        for (path, reason) in cases {
            let root = tempfile::tempdir().unwrap();
            let pod_dir = root.path().join("pod");
            let items = json!([{"key": "PORT", "path": path}]);
            for volume in [
                json!({"configMap": {"name": "app-config", "items": items}}),
                json!({"downwardAPI": {"items": [{"path": path, "fieldRef": {"fieldPath": "metadata.name"}}]}}),
            ] {
                let result = prepare_one(volume, &objects(), &pod_dir);
                let expected =
                    format!("MountVolume.SetUp failed for volume \"v\" : invalid path {path:?}: {reason}");
                assert_eq!(result, Err(expected));
                assert_eq!(entries(root.path()), Vec::<String>::new(), "nothing written for {path:?}");
            }
        }
        let root = tempfile::tempdir().unwrap();
        let climbing =
            prepare(json!([{"name": "../up", "emptyDir": {}}]), &objects(), &root.path().join("pod"));
        assert_eq!(climbing, Err("MountVolume.SetUp failed for volume \"../up\" : invalid path \"../up\": must not contain '..'".into()));
        assert_eq!(entries(root.path()), Vec::<String>::new());
    }

    #[test]
    fn downward_api_volume() {
        // Downward API files hold the same values as env, plus whole label and annotation
        // maps; resources name their container, whose unset limits are the node's allocatable.
        let root = tempfile::tempdir().unwrap();
        let volume = json!({"downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "note", "fieldRef": {"fieldPath": "metadata.annotations['note']"}, "mode": 0o600},
            {"path": "cpu/app", "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"}},
            {"path": "cpu/sidecar", "resourceFieldRef": {"containerName": "sidecar", "resource": "limits.cpu"}},
        ]}});
        let directory = prepare_one(volume, &objects(), root.path()).unwrap();
        assert_eq!(directory, root.path().join("volumes/downward-api/v"));
        let expected = files(&[
            ("cpu/app", "4000", 0o644),
            ("cpu/sidecar", "2", 0o644),
            ("labels", "app=\"web\"\ntier=\"front\"", 0o644),
            ("name", "web", 0o644),
            ("note", "say \"hi\"\n", 0o600),
        ]);
        assert_eq!(visible_files(&directory), expected);
        let unnamed = json!({"downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]}});
        let result = prepare_one(unnamed, &objects(), root.path());
        assert_eq!(result, Err("MountVolume.SetUp failed for volume \"v\" : container  not found".into()));
    }

    #[test]
    fn projected_volume() {
        // A projected volume gathers ConfigMap, Secret and downward API files under one
        // defaultMode; token and trust bundle projections are not supported.
        let root = tempfile::tempdir().unwrap();
        let volume = json!({"projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "app-config", "items": [{"key": "PORT", "path": "port"}]}},
            {"secret": {"name": "db", "items": [{"key": "password", "path": "db/password", "mode": 0o400}]}},
            {"secret": {"name": "gone", "optional": true}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        ]}});
        let directory = prepare_one(volume, &objects(), root.path()).unwrap();
        assert_eq!(directory, root.path().join("volumes/projected/v"));
        let expected = files(&[
            ("db/password", "hunter2", 0o400),
            ("namespace", "default", 0o440),
            ("port", "8080", 0o440),
        ]);
        assert_eq!(visible_files(&directory), expected);
        let token = json!({"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}});
        let result = prepare_one(token, &objects(), root.path());
        assert_eq!(result, Err("MountVolume.SetUp failed for volume \"v\" : projected serviceAccountToken volumes are not supported".into()));
    }

    #[test]
    fn unsupported_kinds() {
        // Volume kinds the agent cannot provide fail with the volume's name and kind.
        let cases = [
            (json!({"persistentVolumeClaim": {"claimName": "data"}}), "persistentVolumeClaim"),
            (json!({"nfs": {"server": "nfs.local", "path": "/export"}}), "nfs"),
            (json!({"csi": {"driver": "example.com/driver"}}), "csi"),
        ];
        for (volume, kind) in cases {
            let root = tempfile::tempdir().unwrap();
            let result = prepare_one(volume, &objects(), root.path());
            assert_eq!(
                result,
                Err(format!("MountVolume.SetUp failed for volume \"v\" : {kind} volumes are not supported"))
            );
        }
    }

    #[test]
    fn volumes_have_a_size_limit() {
        // Contents beyond VOLUME_BYTES_MAX are refused before anything is written; up to it
        // they are written.
        let path_bytes = "big".len() as u64;
        let fitting = "x".repeat((VOLUME_BYTES_MAX - path_bytes) as usize);
        let root = tempfile::tempdir().unwrap();
        let objects = Objects::default().with_config_map("large", &[("big", &fitting)]);
        prepare_one(json!({"configMap": {"name": "large"}}), &objects, root.path()).unwrap();

        let root = tempfile::tempdir().unwrap();
        let too_big = format!("{fitting}x");
        let objects = Objects::default().with_config_map("large", &[("big", &too_big)]);
        let result = prepare_one(json!({"configMap": {"name": "large"}}), &objects, &root.path().join("pod"));
        let message = format!(
            "MountVolume.SetUp failed for volume \"v\" : the volume's {} bytes exceed the limit of {VOLUME_BYTES_MAX} bytes",
            VOLUME_BYTES_MAX + 1
        );
        assert_eq!(result, Err(message));
        assert_eq!(entries(root.path()), Vec::<String>::new());
    }
}
