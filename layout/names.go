package layout

import "path/filepath"

// Plugin dirs below the daemon's root and state dirs. containerd names a
// plugin's dirs by its Type.ID, so these are also the plugins' URIs.
const (
	// TaskPluginDir is the task runtime's (io.containerd.runtime.v2, id
	// task): bundles in the state dir, work dirs in the root dir.
	TaskPluginDir = "io.containerd.runtime.v2.task"
	// SandboxPluginDir is the shim sandbox controller's
	// (io.containerd.sandbox.controller.v1, id shim).
	SandboxPluginDir = "io.containerd.sandbox.controller.v1.shim"
	// MetadataPluginDir, in the root dir, holds the metadata database.
	MetadataPluginDir = "io.containerd.metadata.v1.bolt"
	// MetadataDBFile is the metadata database in MetadataPluginDir.
	MetadataDBFile = "meta.db"
)

// Names of the files in a bundle that containerd itself reads or writes.
const (
	FileBootstrap = "bootstrap.json"
	// FileAddress is written by 1.x-era shims only.
	FileAddress    = "address"
	FileBinaryPath = "shim-binary-path"
	// FileSandbox names the sandbox whose shim a bundle joined.
	FileSandbox = "sandbox"
	FileLog     = "log"
	// FileWork is the symlink to the bundle's work dir.
	FileWork = "work"
	// FileInitPid is written by the runc shim: its task's first process.
	FileInitPid = "init.pid"
	// FileSpec holds the OCI spec the bundle was created with.
	FileSpec  = "config.json"
	DirRootfs = "rootfs"
)

// Files of a recovery pass, in the plugin's dirs.
const (
	// ReportFile, in the plugin's state dir, is the report of the last
	// pass.
	ReportFile = "shimkeeper-recovery.json"
	// BootIDFile, in the plugin's root dir (which survives reboots), holds
	// the boot id of the last pass.
	BootIDFile = "shimkeeper-boot-id"
)

// PluginDir is <dir>/<plugin>: a plugin's dir below the daemon's root or
// state dir.
func PluginDir(dir, plugin string) string { return filepath.Join(dir, plugin) }

// NamespaceDir is <dir>/<ns>, in a plugin's state or root dir.
func NamespaceDir(dir, ns string) string { return filepath.Join(dir, ns) }

// BundleDir is <state>/<ns>/<id>, in a plugin's state dir.
func BundleDir(stateDir, ns, id string) string { return filepath.Join(stateDir, ns, id) }

// WorkDir is <root>/<ns>/<id>, in a plugin's root dir.
func WorkDir(rootDir, ns, id string) string { return filepath.Join(rootDir, ns, id) }

// BundleFile is <bundle>/<name>, name being one of the File constants.
func BundleFile(bundle, name string) string { return filepath.Join(bundle, name) }

// ReportPath is the report in a plugin's state dir.
func ReportPath(stateDir string) string { return filepath.Join(stateDir, ReportFile) }

// BootIDPath is the boot record in a plugin's root dir.
func BootIDPath(rootDir string) string { return filepath.Join(rootDir, BootIDFile) }

// MetadataDB is the metadata database below the daemon's root dir.
func MetadataDB(root string) string { return filepath.Join(root, MetadataPluginDir, MetadataDBFile) }
