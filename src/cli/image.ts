import { Command } from 'commander';
import { imageBuildCommand } from './image-build.js';

/** `damselfly image …`: build, convert, inspect, check and unpack accelerated images. */
export function imageCommand(): Command {
  const image = new Command('image').description(
    'build and convert accelerated images (EROFS bootstrap + deduplicated chunk blobs)',
  );
  image.addCommand(imageBuildCommand());
  return image;
}
