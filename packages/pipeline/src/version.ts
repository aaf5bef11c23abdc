/** This package's version (kept equal to package.json by a test); the default `toolVersion` of provenance. */
export const PIPELINE_VERSION = '0.1.0';

/** The tool name written into every bundle's provenance. */
export const TOOL_NAME = 'ultrasketch';
