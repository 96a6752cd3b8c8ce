export { EXIT } from "../core/error-codes.js";
