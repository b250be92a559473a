// The images an admin allows every app to build on or deploy (`buildpacks:allow-stack`): one JSON
// document, state/allowed-stacks.json. A key limited to apps may use these (and --stack-image) with
// buildpacks:set-stack and git:from-image; admins may use any image.
import { check, JsonDocument, type DocumentSpec } from './json-document.ts';

interface AllowedStacksDocument {
  images: string[];
}

const spec: DocumentSpec<AllowedStacksDocument> = {
  schema: 1,
  empty: () => ({ images: [] }),
  parse: (raw, entries) => ({ images: entries.array(raw.images, 'images', 'image', (v) => check.string(v, 'an image reference')) }),
};

export class AllowedStacksStore {
  readonly #doc: JsonDocument<AllowedStacksDocument>;
  #images: string[] = [];

  constructor(file: string) {
    this.#doc = new JsonDocument(file, spec);
  }

  async load(): Promise<void> {
    this.#images = (await this.#doc.restore()).value.images;
  }

  list(): string[] {
    return [...this.#images];
  }

  has(image: string): boolean {
    return this.#images.includes(image);
  }

  /** Adds an image; false when it was already allowed. */
  async add(image: string): Promise<boolean> {
    if (this.has(image)) return false;
    await this.#write([...this.#images, image].sort());
    return true;
  }

  /** Removes an image; false when it was not allowed. */
  async remove(image: string): Promise<boolean> {
    if (!this.has(image)) return false;
    await this.#write(this.#images.filter((i) => i !== image));
    return true;
  }

  async #write(images: string[]): Promise<void> {
    await this.#doc.write({ images });
    this.#images = images;
  }
}
