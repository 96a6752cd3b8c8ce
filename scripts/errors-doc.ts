// Writes docs/errors.md from the error table in src/core/error-codes.ts.
import { writeFileSync } from "node:fs";
import { errorsDoc } from "../src/core/error-codes.js";

writeFileSync(new URL("../docs/errors.md", import.meta.url), errorsDoc());
