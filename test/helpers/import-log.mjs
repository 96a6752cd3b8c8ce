// `node --import` this file to record every module the process resolves, one URL a line, in $TIDEMARK_IMPORT_LOG.
import { register } from "node:module";

register("./import-log-hooks.mjs", import.meta.url);
