/**
 * A mistake the user can fix (a bad path, option or image). The CLI prints only the message, on one line, and
 * exits with code 2, so the message must say what was wrong and with which input; a stack trace would be noise.
 */
export class UserError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A model bundle that is missing or does not match what EditKit expects. It is a UserError because the fix is on
 * the user's side (re-export, point at the right folder); the message names the file and what was expected.
 */
export class ModelError extends UserError {}
