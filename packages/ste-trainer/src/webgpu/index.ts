/**
 * `@ultrasketch/ste-trainer/webgpu`: the trainer's ops as WGSL programs (issue 15). Browser-safe: imports only
 * workspace packages (runtime-webgpu's device and program machinery) and relative files, never node:*.
 */
export {};
