// git:from-image: deploy an image the Docker engine already has as the app's next release.
import { UserError } from '../../errors.ts';
import { deployImage } from '../../orchestrator/app-operations.ts';
import { expectPositionals, parseArgs } from '../args.ts';
import { requireDaemon, type Command } from '../command.ts';
import { appArg, byName } from './config.ts';

export const gitFromImageCommands: Command[] = [
  {
    name: 'git:from-image',
    usage: 'APP IMAGE',
    summary: 'deploy an image the Docker engine already has (its CMD is the web process)',
    scope: 'app',
    async run(ctx, words) {
      const { positional } = parseArgs(this.name, this.usage, words);
      expectPositionals(this.name, this.usage, positional, ['APP', 'IMAGE']);
      const app = appArg(this.name, this.usage, positional);
      const image = positional[1]!;
      if (!/^[a-z0-9][a-z0-9._/:@-]{0,254}$/i.test(image)) throw new UserError('invalid_image', `"${image}" is not an image reference`, { hint: 'such as myapp:latest or sha256:…' });
      ctx.services.apps.require(app);
      await deployImage(requireDaemon(ctx.services), app, image, { by: byName(ctx), out: ctx.out });
    },
  },
];
